"""Periodic tasks: when a schedule is due, and what to do with ticks missed in downtime.

Pure functions over times; the backends store schedules and the tick ledger, and the
database (a primary key on ``(schedule, due_at)``) makes sure each tick fires once however
many workers look at it. Cron expressions are parsed by ``croniter``, always in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from .errors import ConfigurationError

__all__ = [
    "CATCH_UP_POLICIES",
    "Cron",
    "Every",
    "ScheduleSpec",
    "TickPlan",
    "parse_spec",
    "plan_ticks",
]

CatchUp = Literal["latest", "all", "none"]
CATCH_UP_POLICIES: tuple[str, ...] = ("latest", "all", "none")
#: With ``catch_up="all"``, at most this many missed ticks fire at once; older ones are
#: recorded as missed.
MAX_CATCH_UP = 1000
#: With ``catch_up="none"``, a tick is still "on time" this long after it was due.
ON_TIME = timedelta(seconds=60)
_SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-/]{0,199}$")


@dataclass(frozen=True, slots=True)
class Every:
    """Every ``seconds``, counted from the schedule's ``anchor`` time."""

    seconds: float

    def describe(self) -> str:
        return f"every {timedelta(seconds=self.seconds)}"

    def next_after(self, after: datetime, anchor: datetime) -> datetime:
        """The first tick strictly after ``after`` (ticks are ``anchor + k * seconds``)."""
        step = timedelta(seconds=self.seconds)
        if after < anchor:
            return anchor + step
        count = int((after - anchor) / step) + 1
        candidate = anchor + count * step
        while candidate <= after:  # guard against float rounding
            candidate += step
        return candidate

    def latest_at_or_before(self, moment: datetime, anchor: datetime) -> datetime | None:
        step = timedelta(seconds=self.seconds)
        count = int((moment - anchor) / step)
        return anchor + count * step if count >= 1 else None


@dataclass(frozen=True, slots=True)
class Cron:
    """A five-field cron expression, evaluated in UTC."""

    expression: str

    def describe(self) -> str:
        return f"cron {self.expression}"

    def next_after(self, after: datetime, anchor: datetime) -> datetime:
        from croniter import croniter

        result: datetime = croniter(self.expression, after).get_next(datetime)
        return result

    def latest_at_or_before(self, moment: datetime, anchor: datetime) -> datetime | None:
        from croniter import croniter

        result: datetime = croniter(self.expression, moment + timedelta(seconds=1)).get_prev(
            datetime
        )
        return result if result <= moment else None


ScheduleSpec = Every | Cron


def parse_spec(cron: str | None = None, every: Any = None) -> ScheduleSpec:
    """Validate ``cron=`` or ``every=`` (seconds or a timedelta); exactly one is needed.

    Raises:
        ConfigurationError: neither or both given, a bad cron expression, or a
            non-positive interval.
    """
    if (cron is None) == (every is None):
        raise ConfigurationError("a schedule needs exactly one of cron= or every=")
    if cron is not None:
        if not isinstance(cron, str):
            raise ConfigurationError(f"cron must be a string like '*/5 * * * *', got {cron!r}")
        try:
            from croniter import croniter
        except ImportError as exc:  # pragma: no cover - croniter is a core dependency
            raise ConfigurationError("cron schedules need croniter: pip install croniter") from exc
        expression = " ".join(cron.split())
        if len(expression.split(" ")) != 5 or not croniter.is_valid(expression):
            raise ConfigurationError(
                f"bad cron expression {cron!r}: expected five fields "
                "'minute hour day-of-month month day-of-week', e.g. '*/5 * * * *'"
            )
        return Cron(expression)
    if isinstance(every, timedelta):
        seconds = every.total_seconds()
    elif isinstance(every, int | float) and not isinstance(every, bool):
        seconds = float(every)
    else:
        raise ConfigurationError(f"every must be seconds or a timedelta, got {every!r}")
    if not seconds >= 1:
        raise ConfigurationError(f"every must be at least 1 second, got {every!r}")
    return Every(seconds)


def validate_schedule_name(name: Any) -> str:
    if not isinstance(name, str) or not _SCHEDULE_NAME.match(name):
        raise ConfigurationError(
            f"invalid schedule name {name!r}: use letters, digits and '_ . : - /', "
            "at most 200 characters"
        )
    return name


def validate_catch_up(value: Any) -> CatchUp:
    if value not in CATCH_UP_POLICIES:
        raise ConfigurationError(
            f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, got {value!r}"
        )
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What to do with the ticks of one schedule that are due by ``now``."""

    fire: list[datetime] = field(default_factory=list)
    missed: list[datetime] = field(default_factory=list)
    next_due: datetime | None = None
    truncated: bool = False  # more ticks were due than are listed (long downtime)


def plan_ticks(
    spec: ScheduleSpec,
    anchor: datetime,
    next_due: datetime,
    now: datetime,
    catch_up: CatchUp,
) -> TickPlan:
    """Sort the ticks due by ``now`` (from ``next_due`` on) into fired and missed.

    Args:
        spec: the schedule.
        anchor: where interval schedules count from (their creation time).
        next_due: the first tick not yet handled.
        now: the current time.
        catch_up: ``latest`` fires only the most recent due tick (the rest are missed),
            ``all`` fires every due tick (up to ``MAX_CATCH_UP``), ``none`` fires a tick
            only if it is on time (due less than ``ON_TIME`` ago).

    Returns:
        The ticks to fire, the ticks missed, and the next tick after ``now``. At most
        ``MAX_CATCH_UP`` due ticks are listed; beyond that the plan jumps to the latest
        and says ``truncated``.
    """
    due: list[datetime] = []
    tick = next_due
    while tick <= now and len(due) < MAX_CATCH_UP:
        due.append(tick)
        tick = spec.next_after(tick, anchor)
    truncated = False
    if tick <= now:
        # More than MAX_CATCH_UP ticks came due (long downtime): jump to the latest one;
        # the ones in between are not recorded one by one.
        latest = spec.latest_at_or_before(now, anchor)
        if latest is not None and latest > due[-1]:
            due[-1] = latest
        tick = spec.next_after(now, anchor)
        truncated = True
    if not due:
        return TickPlan(next_due=tick)
    if catch_up == "all":
        fire, missed = due, []
    elif catch_up == "latest":
        fire, missed = due[-1:], due[:-1]
    else:
        on_time = [t for t in due if now - t < ON_TIME]
        fire = on_time[-1:]
        missed = [t for t in due if t not in fire]
    return TickPlan(fire=fire, missed=missed, next_due=tick, truncated=truncated)
