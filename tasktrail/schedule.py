"""Periodic tasks: when a schedule is due, and what to do with ticks missed in downtime.

Pure functions over times; the backends store schedules and the tick ledger, and the
database (a primary key on ``(schedule, due_at)``) makes sure each tick fires once however
many workers look at it. Cron expressions are parsed by ``croniter``, always in UTC.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from .business_days import Calendar, end_of_day, parse_calendar
from .errors import ConfigurationError, InvalidArguments, ScheduleNotFound
from .job import Ref

if TYPE_CHECKING:
    from .app import App
    from .task import Task

__all__ = [
    "CATCH_UP_POLICIES",
    "Cron",
    "Every",
    "OnCalendar",
    "ScheduleDef",
    "ScheduleRecord",
    "ScheduleSpec",
    "Schedules",
    "Tick",
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
#: The longest interval of an ``every=`` schedule (a hundred years).
MAX_EVERY = timedelta(days=36525)
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

        # get_prev is strictly before ``moment``; ``moment`` itself may be a tick.
        previous: datetime = croniter(self.expression, moment).get_prev(datetime)
        following: datetime = croniter(self.expression, previous).get_next(datetime)
        return following if following <= moment else previous


#: How many days an ``OnCalendar`` schedule looks ahead (or back) for a day it keeps.
CALENDAR_SEARCH_DAYS = 3660


@dataclass(frozen=True, slots=True)
class OnCalendar:
    """The ticks of ``base`` that fall on days ``calendar`` keeps (business days, or the
    first or last business day of the month)."""

    base: Every | Cron
    calendar: Calendar

    def describe(self) -> str:
        return f"{self.base.describe()}, {self.calendar.describe()}"

    def next_after(self, after: datetime, anchor: datetime) -> datetime:
        tick = self.base.next_after(after, anchor)
        for _ in range(CALENDAR_SEARCH_DAYS):
            if self.calendar.keeps(tick.date()):
                return tick
            tick = self.base.next_after(end_of_day(tick), anchor)  # the next day's first
        raise ConfigurationError(
            f"schedule {self.describe()} has no tick in {CALENDAR_SEARCH_DAYS} days"
        )

    def latest_at_or_before(self, moment: datetime, anchor: datetime) -> datetime | None:
        tick = self.base.latest_at_or_before(moment, anchor)
        for _ in range(CALENDAR_SEARCH_DAYS):
            if tick is None or self.calendar.keeps(tick.date()):
                return tick
            day_start = tick.replace(hour=0, minute=0, second=0, microsecond=0)
            tick = self.base.latest_at_or_before(day_start - timedelta(microseconds=1), anchor)
        return None


ScheduleSpec = Every | Cron | OnCalendar


def _base(spec: ScheduleSpec) -> Every | Cron:
    return spec.base if isinstance(spec, OnCalendar) else spec


@dataclass(frozen=True, slots=True)
class ScheduleDef:
    """A periodic job: what a user declares (in code, or at run time)."""

    name: str
    task: str
    spec: ScheduleSpec
    args_json: str = "[]"
    kwargs_json: str = "{}"
    ref: Ref | None = None
    queue: str | None = None  # None: the task's queue
    priority: int | None = None  # None: the task's priority
    catch_up: CatchUp = "latest"
    skip_if_running: bool = False
    source: str = "runtime"  # "code" (@app.periodic) or "runtime" (app.schedules.add)

    @property
    def cron(self) -> str | None:
        base = _base(self.spec)
        return base.expression if isinstance(base, Cron) else None

    @property
    def every_seconds(self) -> float | None:
        base = _base(self.spec)
        return base.seconds if isinstance(base, Every) else None

    @property
    def calendar(self) -> Calendar | None:
        return self.spec.calendar if isinstance(self.spec, OnCalendar) else None

    def columns(self) -> dict[str, Any]:
        """The definition's columns in the ``schedules`` table, by name."""
        return {
            "name": self.name,
            "task": self.task,
            "cron": self.cron,
            "every_seconds": self.every_seconds,
            "args": self.args_json,
            "kwargs": self.kwargs_json,
            "ref_type": self.ref.type if self.ref else None,
            "ref_id": self.ref.id if self.ref else None,
            "queue": self.queue,
            "priority": self.priority,
            "catch_up": self.catch_up,
            "skip_if_running": self.skip_if_running,
            "source": self.source,
            "calendar": self.calendar.to_json() if self.calendar else None,
        }


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A stored schedule and where it stands."""

    definition: ScheduleDef
    paused: bool
    anchor: datetime  # interval schedules count from here
    next_due_at: datetime
    last_due_at: datetime | None
    last_job_id: int | None
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.definition.name

    def upcoming(self, count: int = 3) -> builtins.list[datetime]:
        """The next ``count`` due times (none while paused), to check a schedule's rule."""
        if self.paused:
            return []
        found = [self.next_due_at]
        while len(found) < count:
            found.append(self.definition.spec.next_after(found[-1], self.anchor))
        return found

    def to_dict(self) -> dict[str, Any]:
        d = self.definition
        return {
            "name": d.name,
            "task": d.task,
            "cron": d.cron,
            "every_seconds": d.every_seconds,
            "args": json.loads(d.args_json),
            "kwargs": json.loads(d.kwargs_json),
            "ref_type": d.ref.type if d.ref else None,
            "ref_id": d.ref.id if d.ref else None,
            "queue": d.queue,
            "priority": d.priority,
            "catch_up": d.catch_up,
            "skip_if_running": d.skip_if_running,
            "source": d.source,
            "calendar": _calendar_dict(d.calendar),
            "paused": self.paused,
            "anchor": self.anchor.isoformat(),
            "next_due_at": self.next_due_at.isoformat(),
            "last_due_at": self.last_due_at.isoformat() if self.last_due_at else None,
            "last_job_id": self.last_job_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "upcoming": [moment.isoformat() for moment in self.upcoming()],
        }


def _calendar_dict(calendar: Calendar | None) -> dict[str, Any] | None:
    return json.loads(calendar.to_json()) if calendar else None


@dataclass(frozen=True, slots=True)
class Tick:
    """One row of the schedule ledger: what happened to one due time of a schedule."""

    schedule: str
    due_at: datetime
    outcome: str  # fired | skipped | missed
    job_id: int | None
    reason: str | None
    recorded_at: datetime
    worker_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "due_at": self.due_at.isoformat(),
            "outcome": self.outcome,
            "job_id": self.job_id,
            "reason": self.reason,
            "recorded_at": self.recorded_at.isoformat(),
            "worker_id": self.worker_id,
        }


def spec_from_columns(
    cron: str | None, every_seconds: float | None, calendar: str | None = None
) -> ScheduleSpec:
    """The spec of a stored schedule row."""
    base = Cron(cron) if cron is not None else Every(float(every_seconds or 0))
    return OnCalendar(base, Calendar.from_json(calendar)) if calendar else base


def saved_timing(
    existing: ScheduleRecord | None, definition: ScheduleDef, now: datetime
) -> tuple[datetime, datetime]:
    """``(anchor, next_due)`` of a schedule being stored at ``now``.

    A new schedule, or one whose timing changed, counts from ``now``; one stored again
    with the same timing (a worker restarting with the same code) keeps its place.
    """
    if existing is not None and existing.definition.spec == definition.spec:
        return existing.anchor, existing.next_due_at
    return now, definition.spec.next_after(now, now)


def paused_timing(record: ScheduleRecord, paused: bool, now: datetime) -> datetime:
    """The next due time of a schedule paused or resumed at ``now``: a resumed one
    starts from the first tick after ``now`` (ticks while paused are not caught up)."""
    if paused or not record.paused:
        return record.next_due_at
    return record.definition.spec.next_after(now, record.anchor)


def parse_spec(
    cron: str | None = None,
    every: Any = None,
    calendar: Any = None,
    calendar_rule: Any = "business_days",
    closed_days: Any = (),
) -> ScheduleSpec:
    """Validate ``cron=`` or ``every=`` (seconds or a timedelta); exactly one is needed.
    With ``calendar`` (``"DE"``, ``"DE-BY"``), only the ticks on the days its
    ``calendar_rule`` keeps fire (see :mod:`tasktrail.business_days`).

    Raises:
        ConfigurationError: neither or both given, a bad cron expression, a
            non-positive interval, a bad calendar, or a rule that never comes due.
    """
    base = _parse_base(cron, every)
    if calendar is None:
        if calendar_rule != "business_days" or closed_days:
            raise ConfigurationError("calendar_rule and closed_days need a calendar=")
        return base
    spec = OnCalendar(base, parse_calendar(calendar, calendar_rule, closed_days))
    start = datetime(2000, 1, 1, tzinfo=timezone.utc)
    spec.next_after(start, start)  # raises if it never comes due
    return spec


def _parse_base(cron: str | None, every: Any) -> Every | Cron:
    if (cron is None) == (every is None):
        raise ConfigurationError("a schedule needs exactly one of cron= or every=")
    if cron is not None:
        if not isinstance(cron, str):
            raise ConfigurationError(f"cron must be a string like '*/5 * * * *', got {cron!r}")
        try:
            from croniter import CroniterError, croniter
        except ImportError as exc:  # pragma: no cover - croniter is a core dependency
            raise ConfigurationError("cron schedules need croniter: pip install croniter") from exc
        expression = " ".join(cron.split())
        if len(expression.split(" ")) != 5 or not croniter.is_valid(expression):
            raise ConfigurationError(
                f"bad cron expression {cron!r}: expected five fields "
                "'minute hour day-of-month month day-of-week', e.g. '*/5 * * * *'"
            )
        try:  # "0 0 30 2 *" is well formed, but there is no 30th of February
            croniter(expression, datetime(2000, 1, 1, tzinfo=timezone.utc)).get_next(datetime)
        except CroniterError:
            raise ConfigurationError(f"cron expression {cron!r} never comes due") from None
        return Cron(expression)
    if isinstance(every, timedelta):
        seconds = every.total_seconds()
    elif isinstance(every, int | float) and not isinstance(every, bool):
        seconds = float(every)
    else:
        raise ConfigurationError(f"every must be seconds or a timedelta, got {every!r}")
    if not seconds >= 1:
        raise ConfigurationError(f"every must be at least 1 second, got {every!r}")
    if seconds > MAX_EVERY.total_seconds():
        # Due times must stay datetimes: infinity or 1e300 seconds would overflow them.
        raise ConfigurationError(f"every must be at most {MAX_EVERY.days:,} days, got {every!r}")
    return Every(seconds)


def validate_schedule_name(name: Any) -> str:
    if not isinstance(name, str) or not _SCHEDULE_NAME.fullmatch(name):
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


def _existing_name(name: Any) -> str:
    """``name``, if a schedule could have it; else no schedule has it."""
    if not isinstance(name, str) or not _SCHEDULE_NAME.fullmatch(name):
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return name


class Schedules:
    """``app.schedules``: periodic jobs stored in the database, managed at run time.

    Schedules declared in code with ``@app.periodic`` are stored by every worker at
    start (``sync``); the ones added here live until removed. Every worker fires them.
    """

    def __init__(self, app: App) -> None:
        self._app = app

    def add(
        self,
        name: str,
        task: str | Task[Any, Any],
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        ref: Ref | tuple[Any, Any] | str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        catch_up: str = "latest",
        skip_if_running: bool = False,
        replace: bool = False,
        calendar: str | None = None,
        calendar_rule: str = "business_days",
        closed_days: Sequence[Any] = (),
    ) -> ScheduleRecord:
        """Store a schedule: ``task(*args, **kwargs)`` at every due time.

        Args:
            name: unique name, e.g. ``"kpi:42:refresh"``.
            task: a registered task or its name.
            cron: a five-field cron expression (UTC), or
            every: an interval (seconds or a timedelta), counted from now.
            ref: the business object the jobs are about.
            catch_up: after downtime, fire the ``latest`` missed tick only, ``all`` of
                them, or ``none``; every tick is recorded in the ledger either way.
            skip_if_running: skip a tick (recorded, with the reason) while the previous
                job of this schedule is still queued or running.
            replace: overwrite a schedule of the same name instead of failing.
            calendar: only on business days of this country or region (``"DE"``,
                ``"DE-BY"``; public holidays from the ``holidays`` package, weekends
                off); ``calendar_rule`` keeps every business day (``business_days``),
                or only the ``first_business_day`` or ``last_business_day`` of the
                month; ``closed_days`` (dates or ``YYYY-MM-DD``) are closed as well.
        """
        definition = self._app._schedule_definition(
            name,
            task,
            cron=cron,
            every=every,
            args=args,
            kwargs=kwargs or {},
            ref=ref,
            queue=queue,
            priority=priority,
            catch_up=catch_up,
            skip_if_running=skip_if_running,
            source="runtime",
            calendar=calendar,
            calendar_rule=calendar_rule,
            closed_days=closed_days,
        )
        return self._app.backend.save_schedule(
            definition, now=self._app.clock.now(), replace=replace
        )

    def get(self, name: str) -> ScheduleRecord:
        record = self._app.backend.get_schedule(_existing_name(name))
        if record is None:
            raise ScheduleNotFound(f"no schedule named {name!r}")
        return record

    def list(self) -> list[ScheduleRecord]:
        return self._app.backend.list_schedules()

    def pause(self, name: str) -> ScheduleRecord:
        return self._app.backend.set_schedule_paused(
            _existing_name(name), True, now=self._app.clock.now()
        )

    def resume(self, name: str) -> ScheduleRecord:
        """Resume; ticks while paused are not caught up."""
        return self._app.backend.set_schedule_paused(
            _existing_name(name), False, now=self._app.clock.now()
        )

    def remove(self, name: str) -> None:
        if not self._app.backend.remove_schedule(_existing_name(name)):
            raise ScheduleNotFound(f"no schedule named {name!r}")

    def ticks(self, name: str, limit: int | None = 100) -> builtins.list[Tick]:
        """The ledger of a schedule, newest first (``limit=None``: all of it)."""
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit < 2**63
        ):
            raise InvalidArguments(f"limit must be None or an integer of 0 or more, got {limit!r}")
        if not isinstance(name, str) or not _SCHEDULE_NAME.fullmatch(name):
            return []  # no schedule can have that name, so it has no ticks
        return self._app.backend.list_ticks(name, limit=limit)

    def sync(self) -> builtins.list[ScheduleRecord]:
        """Store the schedules declared in code (``@app.periodic``)."""
        now = self._app.clock.now()
        return [
            self._app.backend.save_schedule(definition, now=now, replace=True)
            for definition in self._app.periodics.values()
        ]
