"""Time helpers. Everything tasktrail stores or prints is UTC.

:class:`Clock` is where the App, the supervisor and its job flow read the time: the
wall clock (:meth:`Clock.now`, what history records) and a monotonic one
(:meth:`Clock.monotonic`, what deadlines, heartbeats and back-offs are counted on).
:data:`SYSTEM_CLOCK` is the default; a test passes a :class:`ManualClock` and advances
it instead of sleeping.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol

from .errors import InvalidArguments

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "ManualClock",
    "SystemClock",
    "parse_duration",
    "to_utc",
    "utcnow",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


class Clock(Protocol):
    """Where time is read: the wall clock and a monotonic one."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes back (unlike the wall
        clock, which NTP or an operator may set)."""
        ...


class SystemClock:
    """The host's clocks: :func:`utcnow` and :func:`time.monotonic`."""

    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()


#: The clock used unless another is passed.
SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """A clock that moves only when told to, for tests: :meth:`advance` moves both its
    readings by the same amount. Nothing that waits in real time (a selector's timeout,
    ``time.sleep``) moves it.

    Args:
        now: its wall time to begin with (aware; UTC by default, the time it is made).
        monotonic: its monotonic reading to begin with.
    """

    def __init__(self, now: datetime | None = None, monotonic: float = 1000.0) -> None:
        self._now = utcnow() if now is None else to_utc(now)
        self._monotonic = float(monotonic)

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward (never back: the monotonic reading must not
        decrease)."""
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward, not by {seconds!r} seconds")
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds


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
