"""The backend contract: the only thing the app, the worker and the CLI talk to.

Two implementations: :mod:`tasktrail.backends.sqlite` and
:mod:`tasktrail.backends.postgres`. Both pass the same contract test suite
(``tests/backends``). Arguments and results are tasktrail's own records; no SQL or
driver type crosses this boundary.

Rules every implementation keeps:

* Each state change and the event that records it are written in one transaction.
* A job is in at most one worker's hands: ``reserve`` claims atomically.
* Every change made on behalf of a worker is fenced: it names the worker (and, for
  outcomes, the attempt) that holds the job, and is refused if the job has since been
  recovered and claimed again. A refused outcome is recorded as ``outcome_rejected``.
* Every method that depends on the time takes ``now``, so tests control time.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..errors import BackendUnavailable
from ..job import (
    FINAL_STATUSES,
    Enqueued,
    Event,
    HeldJob,
    Job,
    NewJob,
    Outcome,
    QueueState,
    WorkerInfo,
    WorkerRecord,
)
from ..schedule import ScheduleDef, ScheduleRecord, Tick

__all__ = [
    "Backend",
    "Exchange",
    "JobFilter",
    "PruneCutoffs",
    "PruneReport",
    "RecoveredJob",
    "TaskStats",
    "WorkerControl",
]


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs ``list_jobs`` returns. Unset fields do not filter.

    Results are ordered newest first (by id). ``limit=None`` means all.

    With ``descendants``, the jobs that ``ids``, ``ref_type`` and ``ref_id`` select come
    with every follow-up below them, whatever its own ref, and the other fields filter
    that whole set. ``tree`` selects the tree whose root is that job id.
    """

    ids: tuple[int, ...] | None = None
    ref_type: str | None = None
    ref_id: str | None = None
    task: str | None = None
    queue: str | None = None
    statuses: tuple[str, ...] | None = None
    worker_id: int | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    finished_since: datetime | None = None  # finished at or after
    before_id: int | None = None  # ids below this one: the next page of a listing
    descendants: bool = False
    tree: int | None = None  # a root's id: the jobs of its tree
    limit: int | None = 100


@dataclass(frozen=True, slots=True)
class TaskStats:
    """Statistics of one task over a window ``[since, now]``. Times are in seconds.

    - ``counts``: queued, reserved and running jobs as of now; succeeded, failed and
      cancelled jobs that finished within the window.
    - ``run_p50`` / ``run_p95`` / ``run_p99``: attempts that ended in their child within the window
      (an event ``succeeded``, ``failed`` or ``timeout``), each from its ``started`` event
      to that end event, whatever became of its job. An attempt that ended any other way
      (``lost`` when its worker's lease lapsed, ``interrupted``, ``cancelled``,
      ``deferred``) is not a run and is not counted. Of the jobs finished in the window,
      the newest ``stats.RUN_SAMPLE`` (5,000) are read for these, and the active ones.
    - ``wait_p50`` / ``wait_p95`` / ``wait_p99``: of the jobs finished within the window (the
      newest ``stats.RUN_SAMPLE``), from their ``run_at`` to the start of their last attempt.
    - ``failure_rate``: failed / (succeeded + failed) of the jobs finished in the window.
    - ``throughput_per_active_minute``: jobs finished within the window (succeeded,
      failed or cancelled) divided by the number of clock minutes (UTC) in which at least
      one of them finished: the rate while the task was being done, not a burst spread
      over the whole window. 0.0 when none finished.
    """

    task: str
    counts: dict[str, int]
    run_p50: float | None
    run_p95: float | None
    wait_p50: float | None
    wait_p95: float | None
    failure_rate: float | None
    throughput_per_active_minute: float  # final jobs per minute with any finish
    run_p99: float | None = None
    wait_p99: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            **{f"{status}": count for status, count in self.counts.items()},
            "run_p50": self.run_p50,
            "run_p95": self.run_p95,
            "run_p99": self.run_p99,
            "wait_p50": self.wait_p50,
            "wait_p95": self.wait_p95,
            "wait_p99": self.wait_p99,
            "failure_rate": self.failure_rate,
            "throughput_per_active_minute": self.throughput_per_active_minute,
        }


def failure_rate(counts: Mapping[str, int]) -> float | None:
    """failed / (succeeded + failed) of jobs counted by status; None with neither."""
    done = counts.get("succeeded", 0) + counts.get("failed", 0)
    return counts.get("failed", 0) / done if done else None


@dataclass(frozen=True, slots=True)
class Activity:
    """How many jobs reached a final status in each stretch of ``bucket`` from ``since``
    on: ``ended[i]`` counts them by status (succeeded, failed, cancelled) for
    ``[since + i * bucket, since + (i + 1) * bucket)``; ``by_task`` the same per task.
    The dashboard's charts."""

    since: datetime
    bucket: timedelta
    ended: list[dict[str, int]]
    #: the same, per task (the tasks that had a job end in the window)
    by_task: dict[str, list[dict[str, int]]] = field(default_factory=dict)

    def task(self, name: str) -> Activity:
        """The activity of one task alone."""
        empty: list[dict[str, int]] = [{} for _ in self.ended]
        return Activity(self.since, self.bucket, self.by_task.get(name, empty))

    def failure_rate(self, index: int) -> float | None:
        """failed / (succeeded + failed) in stretch ``index``; None with neither."""
        return failure_rate(self.ended[index])

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "bucket_seconds": self.bucket.total_seconds(),
            "ended": self.ended,
            "by_task": self.by_task,
        }


@dataclass(frozen=True, slots=True)
class Exchange:
    """What :meth:`Backend.exchange` did. The jobs come as :class:`HeldJob` (their
    arguments as JSON text): the worker passes them on to its children undecoded."""

    rejected: list[int]  # outcomes refused by the fence (recorded as outcome_rejected)
    started: list[HeldJob]  # now running in the worker's hands: start_ids first, then claimed
    reserved: list[HeldJob]  # newly claimed jobs left reserved (the worker's buffer)


@dataclass(frozen=True, slots=True)
class WorkerControl:
    """What a running worker is asked to do (:meth:`Backend.worker_control`)."""

    requested_processes: int | None  # scale to this many processes (None: as it is)
    paused_queues: frozenset[str]  # claim nothing from these


@dataclass(frozen=True, slots=True)
class RecoveredJob:
    """A job taken back from a worker whose lease expired."""

    job_id: int
    worker_id: int
    previous_status: str
    new_status: str  # queued or failed


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What ``prune`` deleted: jobs per status, their events, rows of the schedules'
    ledger (``schedule_ticks``) and rows of stopped or lost workers."""

    jobs: dict[str, int] = field(default_factory=dict)
    events: int = 0
    schedule_ticks: int = 0
    workers: int = 0


@dataclass(frozen=True, slots=True)
class PruneCutoffs:
    """What ``prune`` deletes besides jobs, derived from the jobs' retentions
    (:meth:`of`): rows from before these times (``None``: none)."""

    #: Ledger rows that name a job which no longer exists. A pruned job finished before
    #: its status's cutoff, and its tick was due before the job was created: the latest
    #: of the jobs' cutoffs finds them all.
    orphans_before: datetime | None
    #: Ledger rows with no job (skipped, missed), and workers stopped or lost that hold
    #: no job: kept as long as the longest-kept jobs, whose history names those workers.
    #: ``None`` when a final status is kept forever.
    unlinked_before: datetime | None

    @classmethod
    def of(cls, older_than: dict[str, timedelta], now: datetime) -> PruneCutoffs:
        kept = [older_than[status] for status in FINAL_STATUSES if status in older_than]
        if not kept:
            return cls(None, None)
        everything_expires = len(kept) == len(FINAL_STATUSES)
        return cls(now - min(kept), now - max(kept) if everything_expires else None)


class Backend(ABC):
    """Where jobs live. Methods are grouped by who calls them."""

    #: ``"sqlite"`` or ``"postgresql"``.
    kind: str
    #: The DSN with any password hidden.
    url: str

    def __init__(self) -> None:
        self._owner_pid = os.getpid()

    def _check_process(self) -> None:
        """Refuse use of a connection opened in another process (after a fork)."""
        if os.getpid() != self._owner_pid:
            raise BackendUnavailable(
                "this backend connection was opened in another process; "
                "open a new one after fork (App.backend does this for you)"
            )

    @property
    def owner_pid(self) -> int:
        return self._owner_pid

    def __del__(self) -> None:
        # Dropped without close() (an App that went out of scope): close the connections
        # here rather than leave them to the garbage collector. Only in the process that
        # opened them: closing a PostgreSQL connection inherited through fork would end
        # the parent's session.
        if getattr(self, "_owner_pid", None) == os.getpid():
            with contextlib.suppress(Exception):
                self.close()

    # -- set-up -------------------------------------------------------------------

    @abstractmethod
    def setup(self) -> None:
        """Make sure the schema is there and current: migrate if it is missing or behind.

        Raises SchemaError if it is newer than this code, or cannot be created with the
        connection's privileges. Safe to call from several processes at once.
        """

    @abstractmethod
    def migrate(self) -> list[int]:
        """Apply pending schema migrations and return the versions applied.

        Idempotent and safe to run from several processes or hosts at once.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the connection. The backend is unusable afterwards."""

    # -- producers ----------------------------------------------------------------

    @abstractmethod
    def enqueue(
        self, jobs: Sequence[NewJob], *, now: datetime, connection: Any = None
    ) -> list[Enqueued]:
        """Insert jobs and their ``enqueued`` events; say what happened to each, in order.

        Atomic: all jobs are inserted or none. A job whose ``unique_key`` matches a
        queued, reserved or running job (or an earlier job of the same batch) is not
        inserted: its :class:`Enqueued` names the existing job with ``created=False``.
        With ``connection`` the inserts run in the caller's transaction and exist if and
        only if it commits.
        """

    @abstractmethod
    def cancel(self, job_id: int, *, now: datetime, by: str, reason: str | None = None) -> Job:
        """Cancel a job, recording who and why.

        A waiting, queued or reserved job becomes ``cancelled`` at once. A running job gets a
        ``cancel_requested`` event; the worker running it kills it and records it as
        ``cancelled`` (see :meth:`cancel_requests`). Returns the job as it is now.

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job is already final.
        """

    @abstractmethod
    def cancel_requests(self, worker_id: int) -> list[int]:
        """Ids of jobs running in this worker's hands whose cancellation was requested."""

    @abstractmethod
    def retry(self, job_id: int, *, now: datetime, by: str) -> Job:
        """Put a failed or cancelled job back to ``queued`` (event ``retried``).

        Attempt numbers keep counting (history stays unambiguous); if the job has no
        attempts left, ``max_attempts`` becomes ``attempts + 1`` so it runs once more.

        Raises:
            JobNotFound: no such job.
            InvalidTransition: the job is not failed or cancelled.
        """

    # -- workers ------------------------------------------------------------------

    @abstractmethod
    def register_worker(self, info: WorkerInfo, *, now: datetime) -> int:
        """Add a ``workers`` row (status running, lease from now) and return its id."""

    @abstractmethod
    def heartbeat(self, worker_id: int, *, now: datetime) -> bool:
        """Extend the worker's lease by its ``lease_seconds``.

        Returns False, changing nothing, if the worker is no longer registered as
        running (its lease expired and its jobs were recovered): it must then drop the
        jobs it holds and register again.
        """

    @abstractmethod
    def unregister_worker(self, worker_id: int, *, now: datetime) -> None:
        """Mark the worker stopped, atomically taking back any job it still holds.

        A worker releases its jobs and records its outcomes before it unregisters; a job
        still held at this point (the database was unreachable when it tried) is
        recovered as from a lost worker: reserved ones go back to ``queued``, running
        ones get a ``lost`` event and are retried or failed.
        """

    def reserve(
        self, worker_id: int, queues: Sequence[str], limit: int, *, now: datetime
    ) -> list[HeldJob]:
        """Claim up to ``limit`` queued jobs whose ``run_at`` has come.

        Order: highest priority first, then earliest ``run_at``, then lowest id. Atomic:
        no job is ever returned to two workers. Writes a ``reserved`` event per job.
        Returns nothing (and changes nothing) if the worker is not registered as running.
        A job whose ``lock_key`` is held by a reserved or running job waits, behind the
        earlier jobs of its key. (One :meth:`exchange`.)
        """
        if limit <= 0:
            return []
        return self.exchange(
            worker_id, outcomes=(), start_ids=(), claim=limit, start_claimed=0,
            queues=queues, now=now,
        ).reserved  # fmt: skip

    def mark_started(
        self, worker_id: int, job_ids: Sequence[int], *, now: datetime
    ) -> list[HeldJob]:
        """Move reserved jobs held by this worker to ``running`` and count the attempt.

        Returns the jobs actually started (with their new attempt numbers), in the order
        asked; ids this worker no longer holds are left alone. (One :meth:`exchange`.)
        """
        if not job_ids:
            return []
        started = self.exchange(
            worker_id,
            outcomes=(),
            start_ids=job_ids,
            claim=0,
            start_claimed=0,
            queues=(),
            now=now,
        ).started
        order = {job_id: index for index, job_id in enumerate(job_ids)}
        return sorted(started, key=lambda job: order[job.id])

    def finish(self, worker_id: int, outcomes: Sequence[Outcome], *, now: datetime) -> list[int]:
        """Record how attempts ended, all in one transaction.

        Each outcome is applied only if the job is still running in this worker's hands
        at that attempt; otherwise an ``outcome_rejected`` event records it and its id is
        returned. The change each outcome makes is ``backends.common.transition``: an
        ``interrupted`` attempt (worker shutdown) is requeued and given back, so it does
        not use up a retry. Outcomes for jobs that no longer exist are ignored.
        (One :meth:`exchange`.)
        """
        if not outcomes:
            return []
        return self.exchange(
            worker_id,
            outcomes=outcomes,
            start_ids=(),
            claim=0,
            start_claimed=0,
            queues=(),
            now=now,
        ).rejected

    @abstractmethod
    def exchange(
        self,
        worker_id: int,
        *,
        outcomes: Sequence[Outcome],
        start_ids: Sequence[int],
        claim: int,
        start_claimed: int,
        queues: Sequence[str],
        now: datetime,
        child_pids: Sequence[int] = (),
    ) -> Exchange:
        """The worker's hot path in one transaction (one statement on PostgreSQL).

        ``finish(outcomes)``, then ``mark_started(start_ids)``, then claim up to
        ``claim`` jobs like :meth:`reserve`; the first ``start_claimed`` of those are
        started at once (claimed straight into a process, they were never waiting
        reserved: their history shows ``started`` only), the rest stay reserved. Same
        fencing and events as the separate methods; all of it is committed together or
        not at all.

        ``child_pids[n]`` is the child process the ``n``-th claimed job (best first) is
        started for: its ``started`` event and the returned job (``HeldJob.child_pid``)
        name it. An outcome's events name its ``Outcome.child_pid``.
        """

    @abstractmethod
    def release(
        self, worker_id: int, job_ids: Sequence[int], *, now: datetime, reason: str
    ) -> None:
        """Put reserved, not yet started jobs back to ``queued`` (event ``released``)."""

    @abstractmethod
    def recover_lost(self, *, now: datetime) -> list[RecoveredJob]:
        """Take back the jobs of every worker whose lease expired before ``now``.

        The worker is marked ``lost``. Its reserved jobs go back to ``queued``; its
        running jobs get a ``lost`` event and then go back to ``queued`` (with
        ``retry_scheduled``) if they have attempts left, else become ``failed``. Safe to
        run from many processes at once; a worker whose lease is current is never
        touched, however long its jobs run.
        """

    # -- controlling workers and queues ------------------------------------------

    @abstractmethod
    def worker_control(self, worker_id: int) -> WorkerControl:
        """What the worker is asked to do now: a process count requested for it by
        :meth:`request_processes`, and the queues paused fleet-wide. One cheap read (a
        worker makes it once a second)."""

    @abstractmethod
    def update_worker_processes(
        self, worker_id: int, *, processes: int, reserve: int, now: datetime
    ) -> None:
        """Record the worker's process count and reserve as they are now; a pending
        request for that count is done (its ``requested_processes`` is cleared)."""

    @abstractmethod
    def request_processes(self, name: str, processes: int, *, now: datetime) -> int:
        """Ask the running workers named ``name`` to scale to ``processes`` children,
        and wake them; return how many were asked (0: no running worker of that name)."""

    @abstractmethod
    def queued_queues(self) -> list[str]:
        """The names of the queues that hold queued jobs, in order. Read without
        scanning the backlog (one index probe per queue)."""

    @abstractmethod
    def has_backlog(self, queues: Sequence[str], *, now: datetime) -> bool:
        """Whether jobs due by ``now`` are queued in ``queues`` (empty: any queue)."""

    @abstractmethod
    def set_queue_paused(self, name: str, paused: bool, *, by: str, now: datetime) -> None:
        """Pause or resume a queue for every worker, recording who and when, and wake
        the workers: within a second none claims from a paused queue (its running
        jobs finish)."""

    @abstractmethod
    def list_queues(self) -> list[QueueState]:
        """Every queue with active jobs or a pause record, by name: paused or not, and
        its depth. Counts read the indexes of active jobs only."""

    def wakeup_fileno(self) -> int | None:
        """A file descriptor that becomes readable when jobs may have been enqueued.

        The worker adds it to its ``select``; ``None`` means the worker polls.
        """
        return None

    def consume_wakeups(self) -> bool:
        """Drain the wake-up descriptor after it became readable. True if one of the
        wake-ups announced a cancel request (a job the worker runs may have to be
        stopped) or a control request (a scale, a paused queue): the worker looks at
        them at once. The others announce jobs."""
        return False

    # -- reading ------------------------------------------------------------------

    @abstractmethod
    def get_job(self, job_id: int) -> Job | None:
        """One job by id."""

    @abstractmethod
    def list_jobs(self, job_filter: JobFilter) -> list[Job]:
        """Jobs matching the filter, newest first."""

    @abstractmethod
    def list_events(self, job_id: int) -> list[Event]:
        """A job's history in the order it happened."""

    @abstractmethod
    def after_results(self, job_id: int) -> list[tuple[int, str | None, Any]]:
        """``(id, status, result)`` of each job ``job_id`` was enqueued to wait for, by
        id; a job since pruned has the status it ended with and no result."""

    @abstractmethod
    def list_workers(
        self, *, include_stopped: bool = False, limit: int | None = 100
    ) -> list[WorkerRecord]:
        """Registered workers, most recently started first."""

    @abstractmethod
    def task_stats(self, *, since: datetime, now: datetime) -> list[TaskStats]:
        """Per-task statistics over the window ``[since, now]``."""

    @abstractmethod
    def ended_counts(
        self, *, since: datetime, now: datetime, bucket_seconds: float
    ) -> list[tuple[int, str, str, int]]:
        """``(slot, task, status, count)``: the jobs that reached a final status within
        ``[since, now)``, per stretch of ``bucket_seconds`` from ``since`` (slot 0 the
        first), task and status; only those with any (see :class:`Activity`)."""

    @abstractmethod
    def prune(self, *, older_than: dict[str, timedelta], now: datetime) -> PruneReport:
        """Delete final jobs (and their events) that finished before their retention,
        then what no longer has a reason to stay (:class:`PruneCutoffs`):

        - ledger rows (``schedule_ticks``) whose job no longer exists, and rows without
          a job (skipped, missed) due before the longest retention; a row whose job
          still exists stays with it, however old;
        - workers stopped or lost before the longest retention that no reserved or
          running job names. A running worker's row is never deleted.

        ``older_than`` maps a final status to how long jobs in it are kept; a final
        status missing from it is kept forever, and so are then ledger rows without a
        job and stopped workers. Safe to run from several hosts at once.
        """

    # -- schedules --------------------------------------------------------------------

    @abstractmethod
    def save_schedule(
        self, definition: ScheduleDef, *, now: datetime, replace: bool = False
    ) -> ScheduleRecord:
        """Store a schedule. Its first tick is the first due time after ``now``.

        With ``replace``, an existing schedule of that name takes the new definition (its
        paused flag and ledger stay; its next tick is recomputed if the timing changed).

        Raises:
            ConfigurationError: it exists and ``replace`` is False.
        """

    @abstractmethod
    def get_schedule(self, name: str) -> ScheduleRecord | None:
        """One schedule by name."""

    @abstractmethod
    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""

    @abstractmethod
    def set_schedule_paused(self, name: str, paused: bool, *, now: datetime) -> ScheduleRecord:
        """Pause or resume. A resumed schedule's next tick is the first after ``now``:
        ticks while paused are not caught up.

        Raises:
            ScheduleNotFound: no schedule of that name.
        """

    @abstractmethod
    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule (its ledger stays). False if there was none."""

    @abstractmethod
    def fire_due_schedules(
        self,
        *,
        now: datetime,
        worker_id: int | None,
        make_job: Callable[[ScheduleRecord, datetime], NewJob | None],
    ) -> list[Tick]:
        """Handle every tick due by ``now``: fire a job, skip it, or record it missed.

        ``make_job`` builds the job of a schedule for a due time (``None``: this process
        does not know the task; the schedule is left for a worker that does). Each tick is
        recorded once in the ledger, whose primary key ``(schedule, due_at)`` makes sure
        a due time fires at most one job however many workers call this at once; the job
        and its ledger row are written in one transaction.
        """

    @abstractmethod
    def list_ticks(self, name: str, *, limit: int | None = 100) -> list[Tick]:
        """A schedule's ledger, newest due time first."""
