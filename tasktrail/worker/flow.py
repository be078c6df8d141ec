"""The worker's hot path: jobs from the database to the children, outcomes back.

Jobs move ``buffer`` (reserved) → ``ready`` (started, not yet handed over) → a child's
in-flight queue → an outcome in ``pending`` → recorded. Everything the database must
hear about goes in one :meth:`Backend.exchange` per loop turn: the outcomes collected
since the last one, the buffered jobs to start, and a claim for free reserve slots. The
batch therefore grows with the load by itself: the longer a round trip takes, the more
arrives for the next one.

How many jobs a child may hold at once adapts to the jobs' run time and to what a job
costs a child besides (its messages and JSON, which the children measure and report):
several for jobs much shorter than a round trip, so the children never wait for the
database. Those children's queues are then the worker's prefetch, and the buffer stays
small: a buffered job costs a second state change (reserved, then started) that a job
claimed straight into a child does not.

A child is given its next job when the one it runs is expected to end within about a
round trip, by the run times its task has shown in this worker: a job of a task not
seen yet, or one running past what its task takes, gets nothing claimed for its child;
a longer one gets its follower claimed just before it ends (the supervisor wakes up for
that). The follower is queued in the child behind it only if that job is a moment's work
(its task runs for under ``PREFETCH_RUN_LIMIT``); otherwise it waits in ``ready`` and
goes to whichever child is free first. A child cannot give back a job it was handed
until it is done with the one it runs, and any job can run long once: queued behind it,
a job would wait for all of it while other children are free (holding its lock, if it
has one).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..clock import utcnow
from ..job import HeldJob, Outcome
from ..retry import RetryPolicy
from .config import WorkerConfig
from .outcomes import not_started, outcome_from_exit, outcome_from_message
from .pool import PIPELINE_MESSAGE_LIMIT, Child, ChildPool
from .protocol import encode_message

if TYPE_CHECKING:
    from ..app import App
    from ..backends.base import Backend

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
_SMOOTHING = 0.2


class JobFlow:
    """Buffer, ready queue and pending outcomes of one worker. See the module docstring."""

    def __init__(
        self,
        app: App,
        backend: Backend,
        pool: ChildPool,
        config: WorkerConfig,
        db: Callable[[str, Callable[[], Any]], Any],
        name: str,
    ) -> None:
        self.app = app
        self.backend = backend
        self.pool = pool
        self.config = config
        self._db = db
        self.name = name
        self.buffer: deque[HeldJob] = deque()
        self.ready: deque[HeldJob] = deque()
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

    # -- accounting -----------------------------------------------------------------------

    def held(self) -> int:
        """Jobs this worker holds in the database: buffered, started, running, or with an
        outcome not yet recorded. Never more than ``reserve``."""
        return len(self.buffer) + len(self.ready) + self.pool.inflight() + len(self.pending)

    def idle(self) -> bool:
        return not self.buffer and not self.ready and not self.pending and not self.pool.busy()

    def depth(self) -> int:
        """How many jobs a child may hold at once: enough for two round trips (the one
        in flight and the next), so it never runs dry waiting for the database; bigger
        batches also cost the database less per job."""
        if self._runtime is None:
            return 1
        per_job = max(_MIN_JOB_COST, self._runtime + self._overhead)
        wanted = 1 + math.ceil(2 * self._rtt / per_job)
        return max(1, min(wanted, self.config.reserve_limit // self.config.processes))

    def window(self) -> float:
        """How soon a child must be expected to begin a job for it to be given one now:
        about a round trip (the time the job takes to reach it)."""
        return max(0.002, 2 * self._rtt)

    def ahead(self, child: Child, now: float) -> float:
        """Seconds until ``child`` would begin a job handed to it now, by the run times
        seen so far: 0 when it is idle; infinite when it runs or holds a job of a task not
        seen yet, or when what it holds has run past what it was expected to take (it may
        run long: a job given now could wait behind it for any time)."""
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

    def takes_more(self, child: Child) -> bool:
        """Whether ``child`` may be handed a job now, by what it holds: nothing, or only
        jobs a job may be queued behind (:meth:`wait_behind`). Its follower is claimed
        ahead all the same (see :meth:`room`), and waits in ``ready`` for whichever
        child is free first."""
        return all(
            self.wait_behind(assignment.job.task) < math.inf for assignment in child.inflight
        )

    def takers(self, depth: int, now: float) -> dict[Child, tuple[int, float]]:
        """The children that may be handed a job now: how many each may take, and how
        soon it would begin the first (see :meth:`takes_more` and :meth:`ahead`)."""
        window = self.window()
        found = {}
        for child in self.pool.children.values():
            capacity = child.capacity(depth)
            if capacity > 0 and self.takes_more(child):
                wait = self.ahead(child, now)
                if wait <= window:
                    found[child] = (capacity, wait)
        return found

    def can_dispatch(self) -> bool:
        """Whether a job in ``ready`` would be handed to a child now."""
        return bool(self.ready) and bool(self.takers(self.depth(), time.monotonic()))

    def room(self, depth: int | None = None) -> int:
        """How many jobs the children may begin within about a round trip: the jobs to
        start (claim straight into a process) now."""
        depth = self.depth() if depth is None else depth
        now = time.monotonic()
        window = self.window()
        return sum(
            child.capacity(depth)
            for child in self.pool.children.values()
            if self.ahead(child, now) <= window
        )

    def next_refill(self, now: float) -> float | None:
        """When a busy child will be about to finish what it holds, so it can be given
        its next job in time (the supervisor wakes up then); None if no child will be,
        or there is nothing to give."""
        if not (self.ready or self.buffer or self.more_expected):
            return None
        depth = self.depth()
        window = self.window()
        soonest = None
        for child in self.pool.children.values():
            if child.inflight and child.capacity(depth):
                ahead = self.ahead(child, now)
                if window < ahead < math.inf:
                    at = now + ahead - window
                    soonest = at if soonest is None else min(soonest, at)
        return soonest

    def wake(self) -> None:
        """Jobs may have arrived: claim at the next turn."""
        self.more_expected = True

    # -- the round trip -------------------------------------------------------------------

    def exchange(self, worker_id: int, claiming: bool) -> None:
        """One turn with the database: record outcomes, start jobs, claim more."""
        monotonic = time.monotonic()
        if monotonic >= self._next_poll:
            self.more_expected = True
            self._next_poll = monotonic + self.config.poll_interval
        self._flush_foreign(worker_id)
        outcomes = [outcome for holder, outcome in self.pending if holder == worker_id]
        want = 0
        depth = self.depth()
        if claiming:
            room = self.room(depth)
            want = max(0, room - len(self.ready))
        start = [self.buffer.popleft() for _ in range(min(want, len(self.buffer)))]
        start_claimed = want - len(start)
        # The outcomes sent now free their slots in the same transaction, before the claim
        # (and their events come first in history), so those slots can be claimed now.
        free = self.config.reserve_limit - self.held() - len(start) + len(outcomes)
        claim = 0
        # Claim for a child that waits; only top the buffer up while the reserve has room
        # for a batch (a quarter of it), not for every slot an outcome frees.
        batch = max(1, self.config.reserve_limit // 4)
        if claiming and self.more_expected and free > 0 and (start_claimed > 0 or free >= batch):
            # Besides the jobs to start, buffer one per process, not the whole reserve:
            # short jobs have the children's own queues as their prefetch, and the
            # follower of a long one is claimed as it is about to end (next_refill).
            # More would hold jobs other workers could run, and cost each a second state
            # change (reserved, then started). The reserve is the ceiling, which floods
            # of short jobs reach through the children's queues (depth).
            claim = min(free, start_claimed + max(0, self.config.processes - len(self.buffer)))
        start_claimed = min(start_claimed, claim)
        if not outcomes and not start and not claim:
            return
        began = time.monotonic()
        result = self._db(
            "exchanging with the database",
            lambda: self.backend.exchange(
                worker_id,
                outcomes=outcomes,
                start_ids=[job.id for job in start],
                claim=claim,
                start_claimed=start_claimed,
                queues=self.config.queues,
                now=utcnow(),
            ),
        )
        if result is None:  # unreachable: keep everything for the next turn
            self.buffer.extendleft(reversed(start))
            return
        elapsed = time.monotonic() - began
        self._rtt += _SMOOTHING * (elapsed - self._rtt)
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
        started_ids = {job.id for job in result.started}
        for job in start:
            if job.id not in started_ids:
                log.info("job %s was taken back before it started; skipping it", job.id)
        self.ready.extend(result.started)
        self.buffer.extend(result.reserved)
        if claim:
            asked = {job.id for job in start}
            from_claim = len(result.reserved) + sum(
                1 for job in result.started if job.id not in asked
            )
            self.more_expected = from_claim >= claim

    def _flush_foreign(self, worker_id: int) -> None:
        """Record outcomes held under an earlier registration of this worker (one that was
        declared lost): they are refused by the fence, and recorded as that worker's."""
        for holder in {holder for holder, _ in self.pending if holder != worker_id}:
            batch = [outcome for held_by, outcome in self.pending if held_by == holder]

            def record(holder: int = holder, batch: list[Outcome] = batch) -> list[int]:
                return self.backend.finish(holder, batch, now=utcnow())

            rejected = self._db("recording outcomes", record)
            if rejected is None:
                return
            self.pending = [item for item in self.pending if item[0] != holder]
            for job_id in rejected:
                log.warning(
                    "outcome of job %s was rejected: worker %s no longer holds it", job_id, holder
                )

    # -- the children -----------------------------------------------------------------------

    def dispatch(self) -> None:
        """Hand started jobs to the children with the most room, one message per child
        (no database involved)."""
        if not self.ready:
            return
        window = self.window()
        takers = self.takers(self.depth(), time.monotonic())
        room = {child: capacity for child, (capacity, _) in takers.items()}
        ahead = {child: wait for child, (_, wait) in takers.items()}
        batches: dict[Child, list[HeldJob]] = {}
        sizes: dict[Child, int] = {}
        while self.ready and room:
            job = self.ready[0]
            size = len(job.args_json) + len(job.kwargs_json) + len(job.task) + 100
            candidates = [
                c for c in room
                if sizes.get(c, 0) + size <= PIPELINE_MESSAGE_LIMIT
                or not (c.inflight or batches.get(c))
            ]  # fmt: skip
            if not candidates:
                break
            # the child that would begin it first
            child = min(
                candidates, key=lambda c: (ahead[c], len(c.inflight) + len(batches.get(c, ())))
            )
            self.ready.popleft()
            batches.setdefault(child, []).append(job)
            sizes[child] = sizes.get(child, 0) + size
            room[child] -= 1
            # what it holds now runs for this long more before another job could begin
            ahead[child] += self.wait_behind(job.task)
            if not room[child] or ahead[child] > window:
                del room[child]
        for child, jobs in batches.items():
            message = encode_message(
                {
                    "jobs": [
                        {
                            "job": job.id,
                            "attempt": job.attempts,
                            "task": job.task,
                            "args": job.args_json,
                            "kwargs": job.kwargs_json,
                            "ref": [job.ref.type, job.ref.id] if job.ref else None,
                        }
                        for job in jobs
                    ]
                }
            )
            if not self.pool.assign(child, jobs, message):
                log.warning("child %s died before it got jobs %s", child.pid, [j.id for j in jobs])

    def policy(self, job: HeldJob) -> RetryPolicy:
        task = self.app.tasks.get(job.task)
        return task.retry if task is not None else _DEFAULT_POLICY

    def on_message(self, child: Child, message: dict[str, Any]) -> None:
        head = child.assignment
        if head is None or message.get("job") != head.job.id:
            log.error("child %s sent an unexpected message: %r", child.pid, message)
            return
        self.pool.complete_head(child, time.monotonic())
        job = head.job
        outcome = outcome_from_message(
            job, job.attempts, message, self.policy(job), utcnow(), self._rng
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
        now = utcnow()
        head = child.assignment
        if head is not None:
            job = head.job
            runtime = time.monotonic() - (head.started or time.monotonic())
            outcome = outcome_from_exit(
                job, job.attempts, wait_status, child.stop_reason, self.policy(job), now,
                runtime, self._rng,
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
                },
            )  # fmt: skip
        self.pending.append((job.worker_id or 0, outcome))
        if job.lock_key is not None:
            self._lock_freed = True

    def give_back(self, worker_id: int, reason: str) -> None:
        """Stopping: release the buffer, and give back started jobs no child has begun."""
        now = utcnow()
        while self.ready:
            job = self.ready.popleft()
            self.record(job, not_started(job, job.attempts, reason, now))
        if self.buffer:
            ids = [job.id for job in self.buffer]
            self.buffer.clear()
            # If the database is unreachable now, the jobs stay reserved by this worker and
            # come back when it unregisters, or through lease recovery if it cannot.
            self._db(
                "releasing jobs",
                lambda: self.backend.release(worker_id, ids, now=utcnow(), reason=reason),
            )

    def drop(self) -> None:
        """Forget the jobs held: this worker was declared lost, others have them now."""
        self.buffer.clear()
        self.ready.clear()
