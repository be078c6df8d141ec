"""Firing due schedules: the algorithm both backends share.

Each backend supplies a :class:`TickStore` over one open transaction; this module
decides, per due schedule, which ticks fire a job, which are skipped and which were
missed, and writes them through the store. The ledger's primary key ``(schedule,
due_at)`` is what makes a due time fire at most one job: a tick another worker already
recorded is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from ..errors import TasktrailError
from ..job import ACTIVE_STATUSES, Enqueued, NewJob
from ..schedule import ScheduleRecord, Tick, plan_ticks

__all__ = ["TickStore", "fire_due"]

MakeJob = Callable[[ScheduleRecord, datetime], NewJob | None]


class TickStore(Protocol):
    """What :func:`fire_due` needs from a backend, inside one transaction."""

    def due_schedules(self, now: datetime) -> list[ScheduleRecord]:
        """Unpaused schedules due by ``now`` (PostgreSQL: locked, skipping locked ones)."""

    def insert_tick(self, tick: Tick) -> bool:
        """Add a ledger row; False if that due time was recorded already."""

    def set_tick(
        self, schedule: str, due_at: datetime, outcome: str, job_id: int, reason: str | None
    ) -> None:
        """Complete a ledger row once its job is known."""

    def job_status(self, job_id: int) -> str | None: ...

    def enqueue(self, job: NewJob, now: datetime) -> Enqueued: ...

    def advance(
        self,
        name: str,
        next_due: datetime,
        last_due: datetime | None,
        last_job_id: int | None,
        now: datetime,
    ) -> None:
        """Move the schedule on to its next due time."""


def _knows_task(make_job: MakeJob, record: ScheduleRecord, due: datetime) -> bool:
    """False only if this process does not know the schedule's task."""
    try:
        return make_job(record, due) is not None
    except TasktrailError:
        return True  # it knows the task; the error is recorded per tick


def fire_due(
    store: TickStore, now: datetime, worker_id: int | None, make_job: MakeJob
) -> list[Tick]:
    """Handle every tick due by ``now``; see ``Backend.fire_due_schedules``."""
    ticks: list[Tick] = []

    def record(tick: Tick) -> bool:
        if store.insert_tick(tick):
            ticks.append(tick)
            return True
        return False

    for schedule in store.due_schedules(now):
        definition = schedule.definition
        plan = plan_ticks(
            definition.spec, schedule.anchor, schedule.next_due_at, now, definition.catch_up
        )
        if plan.fire and not _knows_task(make_job, schedule, plan.fire[0]):
            continue  # leave it to a worker that knows the task
        name = schedule.name
        missed = f"no worker fired it in time (catch_up={definition.catch_up})"
        for due in plan.missed:
            record(Tick(name, due, "missed", None, missed, now, worker_id))
        last_job_id = schedule.last_job_id
        for due in plan.fire:
            if definition.skip_if_running and last_job_id is not None:
                status = store.job_status(last_job_id)
                if status in ACTIVE_STATUSES:
                    reason = f"previous job {last_job_id} is still {status}"
                    record(Tick(name, due, "skipped", None, reason, now, worker_id))
                    continue
            try:
                new_job = make_job(schedule, due)
            except TasktrailError as exc:  # e.g. the task's signature changed since
                reason = f"cannot make its job: {exc}"
                record(Tick(name, due, "skipped", None, reason, now, worker_id))
                continue
            if new_job is None or not record(Tick(name, due, "fired", None, None, now, worker_id)):
                continue
            enqueued = store.enqueue(new_job, now)
            outcome, why = "fired", None
            if not enqueued.created:  # a unique task whose previous job is still active
                outcome = "skipped"
                why = f"job {enqueued.id} with the same unique key is still active"
            store.set_tick(name, due, outcome, enqueued.id, why)
            ticks[-1] = Tick(name, due, outcome, enqueued.id, why, now, worker_id)
            last_job_id = enqueued.id
        handled = plan.fire + plan.missed
        assert plan.next_due is not None
        store.advance(name, plan.next_due, max(handled) if handled else None, last_job_id, now)
    return ticks
