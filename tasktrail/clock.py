"""Time helpers. Everything tasktrail stores or prints is UTC."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from .errors import InvalidArguments

__all__ = ["parse_duration", "to_utc", "utcnow"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


def to_utc(value: datetime, what: str = "time") -> datetime:
    """``value`` in UTC. Naive datetimes are refused: their meaning depends on the host."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidArguments(
            f"{what} {value.isoformat()} has no timezone; pass an aware datetime "
            "such as datetime.now(timezone.utc)"
        )
    return value.astimezone(timezone.utc)


def parse_duration(text: str) -> timedelta:
    """Parse ``90``, ``30s``, ``5m``, ``1.5h``, ``7d``, ``2w`` into a timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidArguments(
            f"cannot read duration {text!r}: use a number and a unit, e.g. 30s, 5m, 1h, 7d"
        )
    number, unit = match.groups()
    try:
        return timedelta(seconds=float(number) * _UNITS[unit])
    except OverflowError:
        raise InvalidArguments(f"duration {text!r} is too long") from None
