"""Rows of the PostgreSQL backend: psycopg returns timestamptz as aware datetimes (the
session is in UTC) and decodes json columns itself."""

from __future__ import annotations

from ..records import AS_IS

__all__ = ["event", "job", "queue", "schedule", "text_without_nul", "tick", "worker"]

job = AS_IS.job
event = AS_IS.event
worker = AS_IS.worker
queue = AS_IS.queue
schedule = AS_IS.schedule
tick = AS_IS.tick


def text_without_nul(text: str | None) -> str | None:
    """Text PostgreSQL can store in a text column: NUL (which none can hold) becomes
    U+FFFD. For errors and reasons, which are read, not parsed."""
    return text.replace("\x00", "\ufffd") if text and "\x00" in text else text
