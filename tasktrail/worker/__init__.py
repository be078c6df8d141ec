"""The worker: a supervisor process and its forked children."""

from __future__ import annotations

from .supervisor import Supervisor, WorkerConfig

__all__ = ["Supervisor", "WorkerConfig"]
