"""The worker's hot path: jobs from the database to the children, outcomes back.

Jobs are claimed for a child (*planned*: started in the database, in that child's queue
in the supervisor) → sent to the child → an outcome in ``pending`` → recorded.
Everything the database must hear about goes in one :meth:`Backend.exchange` per loop
turn: the outcomes collected since the last one, and a claim for the children that will
begin a job within about a round trip. The batch therefore grows with the load by
itself: the longer a round trip takes, the more arrives for the next one.

A worker claims only what its children begin now, or within about a round trip, and
buffers nothing beyond: a job held by a worker whose processes are busy is a job
another worker, with a free process, cannot run. Each claimed job is started at once in
the database for one child, whose pid its ``started`` event names.

How many jobs a child may hold at once adapts to the jobs' run time and to what a job
costs a child besides (its messages and JSON, which the children measure and report):
several for jobs much shorter than a round trip, so the children never wait for the
database. Those children's queues are the worker's prefetch.

A child is given its next job when the one it runs is expected to end within about a
round trip, by the run times its task has shown in this worker: a job of a task not
seen yet, or one running past what its task takes, gets nothing claimed for its child;
a longer one gets its follower claimed just before it ends (the supervisor wakes up for
that). The follower is sent to the child behind it only if that job is a moment's work
(its task runs for under ``PREFETCH_RUN_LIMIT``); otherwise it waits in the supervisor
until the child is free. A child cannot give back a job it was sent until it is done
with the one it runs, and any job can run long once: queued behind it, a job would wait
for all of it while other children, or other workers, are free (holding its lock, if it
has one). A planned job whose child has not begun it within :meth:`JobFlow.hold` (a
second at most; less for a task known to be shorter) is given back to the queue
(``interrupted``, its attempt given back) for whichever worker is free first.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ..job import Event, HeldJob, Outcome
from ..retry import RetryPolicy
from ..tracing import AttemptSpans
from .config import WorkerConfig
from .db import UNREACHABLE, DatabaseCall
from .outcomes import (
    cancelled_before_start,
    not_started,
    outcome_from_exit,
    outcome_from_message,
)
from .pool import PIPELINE_MESSAGE_LIMIT, Assignment, Child, ChildPool
from .protocol import encode_message

if TYPE_CHECKING:
    from ..app import App
    from ..backends.base import Backend
    from ..clock import Clock

__all__ = ["JobFlow"]

T = TypeVar("T")
log = logging.getLogger("tasktrail.worker")
job_log = logging.getLogger("tasktrail.worker.jobs")  # one line per finished attempt
_DEFAULT_POLICY = RetryPolicy(max_attempts=1)
#: A child's own cost per job (messages, JSON), on top of the task's run time, until its
#: children have measured it (their messages' ``gap``).
_CHILD_OVERHEAD = 0.0002
#: The least a job is taken to cost a child (run time and overhead), in seconds: the
#: measured figures are smoothed towards what the children report, which may be 0.
_MIN_JOB_COST = 1e-6
#: Longest run time (seconds, as a task has shown) of a job that may have another queued
#: behind it in its child; see the module's docstring.
PREFETCH_RUN_LIMIT = 0.01
#: The longest a planned job waits in the supervisor for its child before it is given
#: back (see JobFlow.hold): another worker may have a free process.
HOLD_LIMIT = 1.0
#: The least it waits, in seconds (besides two windows): giving a job back and claiming
#: it again costs round trips, worth it only when the wait would be longer.
HOLD_FLOOR = 0.05
#: Why a planned job that waited too long is given back (its ``interrupted`` event).
GIVEN_BACK = "not begun: its process stayed busy; given back for another worker"
#: A job of a task the worker does not know is put back this long after its first
#: ``deferred``, twice as long after each next one, up to the most (seconds).
UNKNOWN_TASK_DELAY = 5.0
UNKNOWN_TASK_MAX_DELAY = 300.0
_SMOOTHING = 0.2


class JobFlow:
    """The children's planned and sent jobs, and the pending outcomes, of one worker.
    See the module docstring.

    Every backend call goes through ``db`` (the supervisor's guard: an unreachable
    database is a result, and the call is made again at a later turn). The time is read
    from ``clock`` (the app's by default): its wall time for what the database records,
    its monotonic time for when jobs began and are due; the methods that take ``now``
    take a monotonic reading of it.
    """

    def __init__(
        self,
        app: App,
        backend: Backend,
        pool: ChildPool,
        config: WorkerConfig,
        db: DatabaseCall,
        name: str,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.app = app
        self.backend = backend
        self.pool = pool
        self.config = config
        self._db = db
        self.name = name
        self.clock = app.clock if clock is None else clock
        self.spans = AttemptSpans(name)  # (empty unless OpenTelemetry is set up)
        # Outcomes not yet recorded, each with the id of the registration holding its job.
        self.pending: list[tuple[int, Outcome]] = []
        self.more_expected = True
        self._next_poll = 0.0
        self._rtt = 0.002  # seconds per exchange, smoothed
        self._runtime: float | None = None  # seconds per job, smoothed; None: not known yet
        self._overhead = _CHILD_OVERHEAD  # a child's own seconds per job, smoothed
        self._estimates: dict[str, float] = {}  # seconds per job of each task, smoothed
        self._lock_freed = False
        self._rng = random.Random()
        # What it runs and claims from now: the supervisor changes them as the worker is
        # scaled, and as queues are paused and resumed.
        self.processes = config.initial_processes
        self.reserve_limit = config.reserve_for(self.processes)
        self.queues: tuple[str, ...] = config.queues  # empty: every queue
        self.claimable = True  # False: every queue it serves is paused

    # -- accounting -----------------------------------------------------------------------

    def held(self) -> int:
        """Jobs this worker holds in the database: planned, sent to a child, or with an
        outcome not yet recorded. Never more than ``reserve``."""
        return self.pool.inflight() + len(self.pending)

    def idle(self) -> bool:
        return not self.pending and not self.pool.busy()

    def depth(self) -> int:
        """How many jobs a child may hold at once: enough for two round trips (the one
        in flight and the next), so it never runs dry waiting for the database; bigger
        batches also cost the database less per job. One for jobs not that short: none
        is queued behind them (:meth:`wait_behind`)."""
        if self._runtime is None or self._runtime >= PREFETCH_RUN_LIMIT:
            return 1
        per_job = max(_MIN_JOB_COST, self._runtime + self._overhead)
        wanted = 1 + math.ceil(2 * self._rtt / per_job)
        # (rounded up: the reserve, which the claim never exceeds, is shared by them all)
        most = -(-self.reserve_limit // self.processes)
        return max(1, min(wanted, most))

    def window(self) -> float:
        """How soon a child must be expected to begin a job for it to be given one now:
        about a round trip (the time the job takes to reach it)."""
        return max(0.002, 2 * self._rtt)

    def hold(self, task: str) -> float:
        """How long a job of ``task`` planned for a child may wait for it before it is
        given back: the task's usual run time (a wait as long as the job itself is
        worth handing to another worker), ``HOLD_LIMIT`` at most, and not less than
        what giving it back and claiming it again costs."""
        estimate = self._estimates.get(task, HOLD_LIMIT)
        return max(HOLD_FLOOR, 2 * self.window(), min(HOLD_LIMIT, estimate))

    def ahead(self, child: Child, now: float) -> float:
        """Seconds until ``child`` would begin a job planned for it now, by the run times
        seen so far: 0 when it holds nothing; infinite when it runs or holds a job of a
        task not seen yet, or when what it runs has run past what it was expected to
        take (it may run long: a job given now could wait behind it for any time)."""
        if not child.inflight:
            return 0.0
        head = child.inflight[0]
        if head.started is None:
            return math.inf
        expected = 0.0
        for assignment in child.inflight:
            estimate = self._estimates.get(assignment.job.task)
            if estimate is None:
                return math.inf
            expected += estimate
        left = head.started + expected - now
        # A child only seen late by the supervisor (a busy machine) is not overrunning.
        return math.inf if left < -self.window() else max(0.0, left)

    def wait_behind(self, task: str) -> float:
        """How long a job queued behind one of ``task`` would wait for it: its run time
        as the task has shown, if under ``PREFETCH_RUN_LIMIT``; otherwise (or not seen
        yet) infinite, for no job is queued behind it (see the module's docstring)."""
        estimate = self._estimates.get(task, math.inf)
        return estimate if estimate < PREFETCH_RUN_LIMIT else math.inf

    def sendable(self, child: Child) -> list[Assignment]:
        """The planned jobs of ``child`` that may be sent to it now: each one whose every
        job ahead in its queue is a moment's work (:meth:`wait_behind`), or none."""
        found: list[Assignment] = []
        if not child.inflight or child.inflight[-1].sent:
            return found  # nothing planned (planned jobs are the queue's tail)
        for assignment in child.inflight:
            if not assignment.sent:
                found.append(assignment)
            if self.wait_behind(assignment.job.task) == math.inf:
                break  # nothing goes behind it
        return found

    def can_dispatch(self) -> bool:
        """Whether a planned job would be sent to its child now."""
        return any(self.sendable(child) for child in self.pool.children.values())

    def slots(self, child: Child, depth: int) -> int:
        """How many jobs may be claimed for ``child`` by count alone: up to ``depth`` in
        its queue, or else one follower for what it runs (claimed when that is about to
        end, see :meth:`plan`)."""
        capacity = child.capacity(depth)
        if not capacity and child.inflight and not child.unsent():
            capacity = child.capacity(len(child.inflight) + 1)
        return capacity

    def plan(self, depth: int | None = None, now: float | None = None) -> list[Child]:
        """The children to claim jobs for now, one entry per job, best job first: those
        that will begin a job within about a round trip, each for as many as its queue
        has room (see :meth:`depth`), taken in turns, soonest first."""
        depth = self.depth() if depth is None else depth
        now = self.clock.monotonic() if now is None else now
        window = self.window()
        slots: dict[Child, int] = {}
        order: list[tuple[float, int, Child]] = []
        for child in self.pool.children.values():
            capacity = self.slots(child, depth)
            if capacity > 0 and (wait := self.ahead(child, now)) <= window:
                slots[child] = capacity
                order.append((wait, len(child.inflight), child))
        order.sort(key=lambda item: item[:2])
        planned: list[Child] = []
        while slots:
            for _, _, child in order:
                if slots.get(child):
                    planned.append(child)
                    slots[child] -= 1
                    if not slots[child]:
                        del slots[child]
        return planned

    def room(self, depth: int | None = None) -> int:
        """How many jobs the children may begin within about a round trip: the jobs to
        claim now."""
        return len(self.plan(depth))

    def next_refill(self, now: float) -> float | None:
        """When a busy child will be about to finish what it holds, so that its next job
        can be claimed in time (the supervisor wakes up then); None if no child will
        be, or no job is expected."""
        if not self.more_expected:
            return None
        depth = self.depth()
        window = self.window()
        soonest = None
        for child in self.pool.children.values():
            if child.inflight and self.slots(child, depth):
                ahead = self.ahead(child, now)
                if window < ahead < math.inf:
                    at = now + ahead - window
                    soonest = at if soonest is None else min(soonest, at)
        return soonest

    def next_expiry(self) -> float | None:
        """When the first planned job that waits for its child is due to be given back."""
        soonest = None
        for child in self.pool.children.values():
            for assignment in child.unsent():
                at = assignment.planned_at + self.hold(assignment.job.task)
                soonest = at if soonest is None else min(soonest, at)
        return soonest

    def wake(self) -> None:
        """Jobs may have arrived: claim at the next turn."""
        self.more_expected = True

    # -- the round trip -------------------------------------------------------------------

    def exchange(self, worker_id: int, claiming: bool) -> None:
        """One turn with the database: record outcomes, claim jobs for the children."""
        monotonic = self.clock.monotonic()
        if monotonic >= self._next_poll:
            self.more_expected = True
            self._next_poll = monotonic + self.config.poll_interval
        self._flush_foreign(worker_id)
        outcomes = [outcome for holder, outcome in self.pending if holder == worker_id]
        plan: list[Child] = []
        if claiming and self.more_expected and self.claimable:
            # The outcomes sent now free their slots in the same transaction, before the
            # claim (and their events come first in history), so those can be claimed now.
            free = self.reserve_limit - self.held() + len(outcomes)
            plan = self.plan(now=monotonic)[: max(0, free)]
        if not outcomes and not plan:
            return
        began = self.clock.monotonic()
        now = self.clock.now()
        result = self._db(
            "exchanging with the database",
            lambda: self.backend.exchange(
                worker_id,
                outcomes=outcomes,
                start_ids=(),
                claim=len(plan),
                start_claimed=len(plan),
                queues=self.queues,
                now=now,
                child_pids=[child.pid for child in plan],
            ),
        )
        if result is UNREACHABLE:  # keep the outcomes for the next turn
            return
        ended = self.clock.monotonic()
        self._rtt += _SMOOTHING * (ended - began - self._rtt)
        self.pool.tally.exchanged(ended - began, len(result.started))
        if self._lock_freed and outcomes:
            # a job that waited for this lock may be claimable now, though nothing was
            # enqueued: look at the next turn instead of at the next poll
            self._lock_freed = False
            self.more_expected = True
        recorded = {id(outcome) for outcome in outcomes}
        self.pending = [item for item in self.pending if id(item[1]) not in recorded]
        for job_id in result.rejected:
            log.warning(
                "outcome of job %s was rejected: worker %s no longer holds it", job_id, worker_id
            )
        self.spans.started(result.started, now)
        # each job goes to the child its history names (the backend says which)
        planned_for = {child.pid: child for child in plan}
        claimed: dict[Child, list[HeldJob]] = {}
        unknown: list[HeldJob] = []
        for index, job in enumerate(result.started):
            if job.task not in self.app.tasks:
                unknown.append(job)
                continue
            child = planned_for.get(job.child_pid or 0) or plan[index]
            claimed.setdefault(child, []).append(job)
        for child, jobs in claimed.items():
            self.place(child, jobs, ended)
        if unknown:
            self.defer(unknown)
        if plan:
            self.more_expected = len(result.started) >= len(plan)

    def defer(self, jobs: list[HeldJob]) -> None:
        """Jobs of tasks this worker does not know (their code is not deployed here yet,
        or no longer): back to the queue with a back-off and their attempt given back
        (``deferred``), for a worker that knows the task; failed (``unknown_task``) once
        ``unknown_task_grace`` has passed since the first time a worker put it back.
        (How many times it was, and since when, is read from its history: a rare path.)"""
        grace = self.config.unknown_task_grace
        for job in jobs:

            def read(job_id: int = job.id) -> list[Event]:
                return self.backend.list_events(job_id)

            history = self._db("reading history", read)
            now = self.clock.now()
            # (unreachable: as if never put back before)
            found = () if history is UNREACHABLE else history
            before = [event for event in found if event.kind == "deferred"]
            since = before[0].at if before else now
            if (now - since).total_seconds() >= grace:
                error = (
                    f"unknown task {job.task!r}: no worker that took the job had it for "
                    f"{grace:g}s (since {since.isoformat()})"
                )
                outcome = Outcome(
                    job.id, job.attempts, "failed", now, error=error,
                    detail={"reason": "unknown_task", "task": job.task},
                )  # fmt: skip
            else:
                delay = min(UNKNOWN_TASK_MAX_DELAY, UNKNOWN_TASK_DELAY * 2 ** len(before))
                run_at = now + timedelta(seconds=delay)
                outcome = Outcome(
                    job.id, job.attempts, "deferred", now,
                    error=f"unknown task {job.task!r} in worker {self.name}",
                    retry_at=run_at,
                    detail={
                        "reason": "unknown_task", "task": job.task, "run_at": run_at.isoformat(),
                        "fails_after": (since + timedelta(seconds=grace)).isoformat(),
                    },
                )  # fmt: skip
            self.record(job, outcome)

    def _flush_foreign(self, worker_id: int) -> None:
        """Record outcomes held under an earlier registration of this worker (one that was
        declared lost): they are refused by the fence, and recorded as that worker's."""
        for holder in {holder for holder, _ in self.pending if holder != worker_id}:
            batch = [outcome for held_by, outcome in self.pending if held_by == holder]

            def record(holder: int = holder, batch: list[Outcome] = batch) -> list[int]:
                return self.backend.finish(holder, batch, now=self.clock.now())

            rejected = self._db("recording outcomes", record)
            if rejected is UNREACHABLE:
                return
            self.pending = [item for item in self.pending if item[0] != holder]
            for job_id in rejected:
                log.warning(
                    "outcome of job %s was rejected: worker %s no longer holds it", job_id, holder
                )

    # -- the children -----------------------------------------------------------------------

    def dispatch(self) -> None:
        """Send each child the planned jobs it may take now, in one message per child (no
        database involved)."""
        for child in list(self.pool.children.values()):
            assignments = self.sendable(child)
            if not assignments:
                continue
            busy = child.assignment is not None
            size = 0
            batch: list[Assignment] = []
            for assignment in assignments:
                job = assignment.job
                size += len(job.args_json) + len(job.kwargs_json) + len(job.task) + 100
                # one job of any size may go to an idle child; a busy one reads its
                # socket only between jobs, and the supervisor must never block on it
                if (batch or busy) and size > PIPELINE_MESSAGE_LIMIT:
                    break
                batch.append(assignment)
            jobs: list[dict[str, Any]] = [
                {
                    "job": a.job.id,
                    "attempt": a.job.attempts,
                    "task": a.job.task,
                    "args": a.job.args_json,
                    "kwargs": a.job.kwargs_json,
                    "ref": [a.job.ref.type, a.job.ref.id] if a.job.ref else None,
                }
                for a in batch
            ]
            if self.spans:  # traced: each task runs in its attempt's span
                for entry, assignment in zip(jobs, batch, strict=True):
                    entry["trace"] = self.spans.carrier(assignment.job.id)
            message = encode_message({"jobs": jobs})
            if not self.pool.send(child, batch, message, self.clock.monotonic()):
                log.warning(
                    "child %s died before it got jobs %s", child.pid, [a.job.id for a in batch]
                )

    def place(self, child: Child, jobs: list[HeldJob], now: float) -> None:
        """Plan ``jobs``, claimed for ``child``, in its queue: those that are a moment's
        work go before the longer jobs planned for it (nothing can be sent behind those),
        each kind in the order claimed. Its place among that child's jobs is all that is
        left to decide: a job's history names its child."""
        self.pool.plan(child, jobs, now)
        tail: list[Assignment] = []
        while child.inflight and not child.inflight[-1].sent:
            tail.append(child.inflight.pop())
        tail.reverse()
        tail.sort(key=lambda assignment: self.wait_behind(assignment.job.task) == math.inf)
        child.inflight.extend(tail)

    def give_back_late(self, now: float) -> None:
        """Give back the planned jobs that have waited for their child longer than
        :meth:`hold`: queued again at once (``interrupted``, attempt given back), for
        whichever worker has a free process."""
        stamp = None
        for child in self.pool.children.values():
            for assignment in child.unsent():
                # the same sum as next_expiry(): woken at that time, it is due
                if now >= assignment.planned_at + self.hold(assignment.job.task):
                    self.pool.unplan(child, assignment)
                    stamp = stamp or self.clock.now()
                    job = assignment.job
                    log.info("job %s: %s (child %s)", job.id, GIVEN_BACK, child.pid)
                    self.record(job, not_started(job, job.attempts, GIVEN_BACK, stamp))
                    self.more_expected = True

    def cancel_planned(self, job_id: int) -> bool:
        """A cancel was asked for a job planned for a child and not sent: it ends here,
        ``cancelled`` without having begun. False if no child holds it unsent."""
        for child in self.pool.children.values():
            for assignment in child.unsent():
                if assignment.job.id == job_id:
                    self.pool.unplan(child, assignment)
                    job = assignment.job
                    self.record(job, cancelled_before_start(job, job.attempts, self.clock.now()))
                    return True
        return False

    def policy(self, job: HeldJob) -> RetryPolicy:
        task = self.app.tasks.get(job.task)
        return task.retry if task is not None else _DEFAULT_POLICY

    def on_message(self, child: Child, message: dict[str, Any]) -> None:
        head = child.assignment
        if head is None or message.get("job") != head.job.id:
            log.error("child %s sent an unexpected message: %r", child.pid, message)
            return
        self.pool.complete_head(child, self.clock.monotonic())
        job = head.job
        outcome = outcome_from_message(
            job, job.attempts, message, self.policy(job), self.clock.now(), self._rng, child.pid
        )
        if outcome.kind != "cancelled":
            runtime = float(message.get("runtime") or 0.0)
            gap = message.get("gap")
            if gap is not None:
                self._overhead += _SMOOTHING * (float(gap) - self._overhead)
            if self._runtime is None:
                self._runtime = runtime
            else:
                self._runtime += _SMOOTHING * (runtime - self._runtime)
            if job.task in self.app.tasks:  # only registered names: a bounded dict
                estimate = self._estimates.get(job.task, runtime)
                self._estimates[job.task] = estimate + _SMOOTHING * (runtime - estimate)
        self.record(job, outcome)

    def on_exit(self, child: Child, wait_status: int) -> None:
        """A child died: its running job gets an outcome; the ones waiting behind it were
        never begun, and go back to the queue with their attempt given back."""
        now = self.clock.now()
        head = child.assignment
        if head is not None:
            job = head.job
            monotonic = self.clock.monotonic()
            runtime = monotonic - (monotonic if head.started is None else head.started)
            outcome = outcome_from_exit(
                job, job.attempts, wait_status, child.stop_reason, self.policy(job), now,
                runtime, self._rng, child.pid,
            )  # fmt: skip
            if outcome is not None:
                self.record(job, outcome)
            child.inflight.popleft()
        while child.inflight:
            job = child.inflight.popleft().job
            if child.stop_reason != "abandon":
                self.record(job, not_started(job, job.attempts, "its process died first", now))

    def record(self, job: HeldJob, outcome: Outcome) -> None:
        level = logging.INFO if outcome.kind == "succeeded" else logging.WARNING
        if job_log.isEnabledFor(level):
            ref = f" ref={job.ref}" if job.ref else ""
            job_log.log(
                level,
                "job %s %s%s attempt %s on %s: %s%s",
                job.id, job.task, ref, outcome.attempt, self.name, outcome.kind,
                f" ({outcome.error})" if outcome.error else "",
                extra={
                    "job_id": job.id, "task": job.task, "ref": str(job.ref) if job.ref else None,
                    "attempt": outcome.attempt, "worker": self.name,
                    "child_pid": outcome.child_pid,
                },
            )  # fmt: skip
        self.pending.append((job.worker_id or 0, outcome))
        self.spans.ended(job.id, outcome)
        self.pool.tally.finished[outcome.kind] += 1
        if job.lock_key is not None:
            self._lock_freed = True

    def give_back(self, reason: str, children: Iterable[Child] | None = None) -> None:
        """Give back the planned jobs no child has been sent (of ``children``, or of
        all: the worker is stopping)."""
        now = self.clock.now()
        for child in self.pool.children.values() if children is None else children:
            for assignment in child.unsent():
                self.pool.unplan(child, assignment)
                job = assignment.job
                self.record(job, not_started(job, job.attempts, reason, now))

    def drop(self) -> None:
        """Forget the planned jobs: this worker was declared lost, others have them now."""
        for child in self.pool.children.values():
            for assignment in child.unsent():
                self.pool.unplan(child, assignment)
                self.spans.lost(assignment.job.id)
