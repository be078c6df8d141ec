"""The worker client: one supervisor process per host-level worker.

It alone talks to the backend. Its loop reserves jobs (never holding more than
``reserve``), hands them to its pre-forked children, collects their outcomes and records
them in batches, enforces timeouts, replaces children that die, heartbeats its lease,
recovers the jobs of workers whose lease expired, and shuts down without losing a job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..backends.base import JobFilter
from ..clock import utcnow
from ..errors import BackendUnavailable
from ..job import ACTIVE_STATUSES, Job, Outcome, WorkerInfo
from ..retry import RetryPolicy
from .config import WorkerConfig
from .outcomes import outcome_from_exit, outcome_from_message
from .pool import Child, ChildPool
from .signals import SignalInbox

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Supervisor", "WorkerConfig"]

T = TypeVar("T")
log = logging.getLogger("tasktrail.worker")
job_log = logging.getLogger("tasktrail.worker.jobs")  # one line per finished attempt
_DEFAULT_POLICY = RetryPolicy(max_attempts=1)


class Supervisor:
    """Runs one worker client in the current process. See the module docstring."""

    def __init__(self, app: App, config: WorkerConfig) -> None:
        from ..task import validate_name

        for queue in config.queues:
            validate_name(queue, "queue name")
        self.app = app
        self.config = config
        self.backend = app.backend
        self.name = config.name or f"{socket.gethostname()}:{os.getpid()}"
        self.worker_id = 0
        self.buffer: deque[Job] = deque()
        # Outcomes not yet recorded, each with the id of the registration holding its job.
        self.pending: list[tuple[int, Outcome]] = []
        self.stopping = False
        self.stop_now = False
        self.grace_deadline = 0.0
        self._rng = random.Random()
        self._selector = selectors.DefaultSelector()
        self.pool = ChildPool(app, self._selector, config.max_tasks_per_child)
        self._signals = SignalInbox()
        self._more_expected = True
        self._queues_drained = False
        self._next_poll = 0.0
        self._next_heartbeat = 0.0
        self._next_recover = 0.0
        self._next_duties = 0.0
        self._db_retry_at = 0.0
        self._db_failures = 0
        self._wake_fd: int | None = None

    # -- the loop -------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped by a signal (or, in burst mode, until the queues are drained)."""
        self._install_signals()
        try:
            self._register()
            if self.app.periodics:
                self.app.schedules.sync()
            log.info(
                "worker %s (id %s) started: %d processes, reserve %d, queues %s, %s",
                self.name,
                self.worker_id,
                self.config.processes,
                self.config.reserve_limit,
                ",".join(self.config.queues) or "all",
                self.backend.url,
            )
            for _ in range(self.config.processes):
                self.pool.spawn()
            while not self._finished():
                self._step()
                self._wait()
        finally:
            self._shutdown()
            self._restore_signals()
        log.info("worker %s stopped", self.name)
        return 0

    def _step(self) -> None:
        self._handle_signals()
        self._reap()
        self._enforce_deadlines()
        self._flush()
        monotonic = time.monotonic()
        if monotonic >= self._next_heartbeat:
            self._heartbeat()
        if monotonic >= self._next_recover:
            self._recover()
        if monotonic >= self._next_duties:
            self._duties(monotonic)
        if not self.stopping:
            self._refill()
        self._dispatch()
        if self.config.burst and not self.stopping and self._idle():
            self._check_drained()

    def _finished(self) -> bool:
        return (
            self.stopping
            and not self.pool.busy()
            and not self.buffer
            and (not self.pending or self.stop_now or time.monotonic() > self.grace_deadline + 60)
        )

    def _idle(self) -> bool:
        return not self.buffer and not self.pending and not self.pool.busy()

    def _held(self) -> int:
        """Jobs this worker holds in the database: buffered, running, or outcome unsaved."""
        return len(self.buffer) + len(self.pool.busy()) + len(self.pending)

    def _wait(self) -> None:
        if self._finished():
            return
        monotonic = time.monotonic()
        timeout = min(self.config.poll_interval, self._next_heartbeat - monotonic)
        if self.buffer and self.pool.idle():
            timeout = 0.0
        if self.pending and monotonic >= self._db_retry_at:
            timeout = 0.0
        for child in self.pool.children.values():
            if child.assignment and child.assignment.deadline and child.stop_reason is None:
                timeout = min(timeout, child.assignment.deadline - monotonic)
            if child.kill_at is not None and not child.kill_sent:
                timeout = min(timeout, child.kill_at - monotonic)
        if self.stopping:
            timeout = min(timeout, self.grace_deadline - monotonic, 0.1)
        for key, _ in self._selector.select(max(0.0, timeout)):
            if isinstance(key.data, Child):
                for message in self.pool.read(key.data):
                    self._on_message(key.data, message)
            elif key.data == "signal":
                self._signals.drain()
            elif key.data == "wake":
                self.backend.consume_wakeups()
                self._sync_wake_fd()
                self._more_expected = True
                # a cancel may be what woke us: look soon, but not on every enqueue
                self._next_duties = min(self._next_duties, time.monotonic() + 0.05)

    # -- talking to the backend -------------------------------------------------------

    def _db(self, what: str, call: Callable[[], T]) -> T | None:
        """Run a backend call; on a connection failure log it, back off and return None."""
        if time.monotonic() < self._db_retry_at:
            return None
        try:
            result = call()
        except BackendUnavailable as exc:
            self._db_failures += 1
            delay = min(30.0, 0.1 * 2 ** min(self._db_failures, 10)) * self._rng.uniform(0.8, 1.2)
            self._db_retry_at = time.monotonic() + delay
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            return None
        if self._db_failures:
            log.info("database reachable again")
        self._db_failures = 0
        return result

    def _register(self) -> None:
        info = WorkerInfo(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            processes=self.config.processes,
            reserve=self.config.reserve_limit,
            queues=self.config.queues,
            lease_seconds=self.config.lease_seconds,
        )
        self.worker_id = self.backend.register_worker(info, now=utcnow())
        self._next_heartbeat = time.monotonic() + self.config.lease_seconds / 3
        self._sync_wake_fd()

    def _sync_wake_fd(self) -> None:
        """Watch the backend's current wake-up descriptor.

        It changes when the backend reconnects, possibly to a new socket with the same
        number, which epoll would not know: so always register it afresh.
        """
        fd = self.backend.wakeup_fileno()
        if self._wake_fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._wake_fd)
            # Its number may be reused by a child's own socket: stop closing it there.
            self.pool.keep_in_child(self._wake_fd)
        self._wake_fd = fd
        if fd is not None:
            self._selector.register(fd, selectors.EVENT_READ, "wake")
            self.pool.close_in_child(fd)

    def _heartbeat(self) -> None:
        alive = self._db("heartbeat", lambda: self.backend.heartbeat(self.worker_id, now=utcnow()))
        if alive is None:
            return
        self._next_heartbeat = time.monotonic() + self.config.lease_seconds / 3
        self._sync_wake_fd()
        if not alive and not self.stopping:
            log.error(
                "worker %s (id %s) was declared lost (its lease expired) and its jobs were "
                "recovered by others; dropping the jobs it held and registering again",
                self.name,
                self.worker_id,
            )
            self.buffer.clear()
            for child in self.pool.busy():
                self.pool.kill(child, "abandon")
            self._db("register", self._register)

    def _duties(self, monotonic: float) -> None:
        """Every second: fire due schedules, and kill running jobs whose cancel was asked."""
        self._next_duties = monotonic + 1.0
        if not self.stopping:
            ticks = self._db(
                "firing schedules",
                lambda: self.backend.fire_due_schedules(
                    now=utcnow(), worker_id=self.worker_id, make_job=self.app._schedule_job
                ),
            )
            for tick in ticks or ():
                log.info(
                    "schedule %s, due %s: %s%s",
                    tick.schedule,
                    tick.due_at.isoformat(),
                    tick.outcome,
                    f" job {tick.job_id}" if tick.job_id else f" ({tick.reason})",
                )
                self._more_expected = True
        busy = {child.assignment.job.id: child for child in self.pool.busy() if child.assignment}
        if not busy:
            return
        for job_id in (
            self._db(
                "checking cancel requests", lambda: self.backend.cancel_requests(self.worker_id)
            )
            or ()
        ):
            child = busy.get(job_id)
            if child is not None and child.stop_reason is None:
                log.warning("job %s: cancel requested; stopping child %s", job_id, child.pid)
                # A cancel is not a timeout: the task gets a second to clean up, not more.
                self.pool.terminate(child, "cancel", monotonic + min(1.0, self.config.kill_grace))

    def _recover(self) -> None:
        self._next_recover = time.monotonic() + max(1.0, self.config.lease_seconds / 2)
        recovered = self._db("recover", lambda: self.backend.recover_lost(now=utcnow()))
        for item in recovered or ():
            log.warning(
                "recovered job %s from lost worker %s: %s -> %s",
                item.job_id,
                item.worker_id,
                item.previous_status,
                item.new_status,
            )
        if recovered:
            self._more_expected = True

    def _flush(self) -> None:
        # Each outcome is recorded under the registration that held its job. After this
        # worker was declared lost and registered again, a late outcome from before is
        # then refused (and recorded) as the old registration's, not the new one's.
        while self.pending:
            holder = self.pending[0][0]
            count = next(
                (i for i, (worker_id, _) in enumerate(self.pending) if worker_id != holder),
                len(self.pending),
            )
            if not self._finish(holder, [outcome for _, outcome in self.pending[:count]]):
                return
            del self.pending[:count]

    def _finish(self, holder: int, batch: list[Outcome]) -> bool:
        """Record ``batch`` for worker ``holder``; False if the database was unreachable."""
        rejected = self._db(
            "recording outcomes", lambda: self.backend.finish(holder, batch, now=utcnow())
        )
        if rejected is None:
            return False
        for job_id in rejected:
            log.warning(
                "outcome of job %s was rejected: worker %s no longer holds it", job_id, holder
            )
        return True

    def _refill(self) -> None:
        monotonic = time.monotonic()
        if monotonic >= self._next_poll:
            self._more_expected = True
            self._next_poll = monotonic + self.config.poll_interval
        free = self.config.reserve_limit - self._held()
        if free <= 0 or not self._more_expected:
            return
        starving = len(self.pool.idle()) > len(self.buffer)
        if not starving and free < max(1, self.config.reserve_limit // 2):
            return  # wait for a bigger batch: one round trip for several jobs
        queues = self.config.queues
        jobs = self._db(
            "reserving jobs",
            lambda: self.backend.reserve(self.worker_id, queues, free, now=utcnow()),
        )
        if jobs is None:
            return
        self._more_expected = len(jobs) == free
        self.buffer.extend(jobs)

    def _dispatch(self) -> None:
        idle = self.pool.idle()
        if not idle or not self.buffer:
            return
        batch = [self.buffer.popleft() for _ in range(min(len(idle), len(self.buffer)))]
        ids = [job.id for job in batch]
        started = self._db(
            "starting jobs", lambda: self.backend.mark_started(self.worker_id, ids, now=utcnow())
        )
        if started is None:
            self.buffer.extendleft(reversed(batch))
            return
        by_id = {job.id: job for job in started}
        for job in batch:
            if job.id not in by_id:
                log.info("job %s was taken back before it started; skipping it", job.id)
        for child, job in zip(idle, (j for j in batch if j.id in by_id), strict=False):
            running = by_id[job.id]
            message = {
                "job": running.id,
                "attempt": running.attempts,
                "task": running.task,
                "args": running.args,
                "kwargs": running.kwargs,
                "ref": [running.ref.type, running.ref.id] if running.ref else None,
            }
            if not self.pool.assign(child, running, message):
                log.warning("child %s died before it got job %s", child.pid, running.id)

    # -- children ---------------------------------------------------------------------

    def _policy(self, job: Job) -> RetryPolicy:
        task = self.app.tasks.get(job.task)
        return task.retry if task is not None else _DEFAULT_POLICY

    def _on_message(self, child: Child, message: dict[str, Any]) -> None:
        assignment = child.assignment
        if assignment is None or message.get("job") != assignment.job.id:
            log.error("child %s sent an unexpected message: %r", child.pid, message)
            return
        job = assignment.job
        child.assignment = None
        outcome = outcome_from_message(
            job, job.attempts, message, self._policy(job), utcnow(), self._rng
        )
        self._record(job, outcome)

    def _record(self, job: Job, outcome: Outcome) -> None:
        ref = f" ref={job.ref}" if job.ref else ""
        level = logging.INFO if outcome.kind == "succeeded" else logging.WARNING
        job_log.log(
            level,
            "job %s %s%s attempt %s on %s: %s%s",
            job.id,
            job.task,
            ref,
            outcome.attempt,
            self.name,
            outcome.kind,
            f" ({outcome.error})" if outcome.error else "",
            extra={
                "job_id": job.id,
                "task": job.task,
                "ref": str(job.ref) if job.ref else None,
                "attempt": outcome.attempt,
                "worker": self.name,
            },
        )
        self.pending.append((job.worker_id or self.worker_id, outcome))

    def _reap(self) -> None:
        for child, status in self.pool.reap():
            for message in self.pool.drain(child):
                self._on_message(child, message)
            assignment = child.assignment
            if assignment is not None:
                job = assignment.job
                outcome = outcome_from_exit(
                    job,
                    job.attempts,
                    status,
                    child.stop_reason,
                    self._policy(job),
                    utcnow(),
                    time.monotonic() - assignment.started,
                    self._rng,
                )
                if outcome is not None:
                    self._record(job, outcome)
            elif (
                child.stop_reason is None
                and not self.stopping
                and not child.eof
                and not child.spent
            ):
                log.warning("idle child %s exited unexpectedly", child.pid)
            self.pool.forget(child)
            if not self.stopping:
                self.pool.spawn()

    def _enforce_deadlines(self) -> None:
        monotonic = time.monotonic()
        for child in list(self.pool.children.values()):
            assignment = child.assignment
            if (
                assignment is not None
                and assignment.deadline is not None
                and monotonic >= assignment.deadline
                and child.stop_reason is None
            ):
                log.warning(
                    "job %s ran past its %gs timeout; stopping child %s",
                    assignment.job.id,
                    assignment.job.timeout,
                    child.pid,
                )
                self.pool.terminate(child, "timeout", monotonic + self.config.kill_grace)
            if child.kill_at is not None and not child.kill_sent and monotonic >= child.kill_at:
                self.pool.kill(child)
        if self.stopping and monotonic >= self.grace_deadline:
            for child in self.pool.busy():
                if child.stop_reason is None:
                    self.pool.terminate(child, "shutdown", monotonic + self.config.kill_grace)

    # -- signals and shutdown -----------------------------------------------------------

    def _install_signals(self) -> None:
        self._signals.install()
        self._selector.register(self._signals.fileno(), selectors.EVENT_READ, "signal")
        for fd in self._signals.descriptors():
            self.pool.close_in_child(fd)

    def _restore_signals(self) -> None:
        self._signals.restore()
        self._selector.close()

    def _handle_signals(self) -> None:
        for signum in self._signals.pending():
            if signum == signal.SIGCHLD:
                continue
            if self.stopping:
                log.warning("second %s: stopping now", signal.Signals(signum).name)
                self._stop_immediately()
            else:
                log.info(
                    "%s: stopping; running jobs get %gs to finish",
                    signal.Signals(signum).name,
                    self.config.grace,
                )
                self.stop()

    def stop(self) -> None:
        """Begin a graceful stop: take no new job, release unstarted ones."""
        if self.stopping:
            return
        self.stopping = True
        self.grace_deadline = time.monotonic() + self.config.grace
        self._release_buffer()

    def _stop_immediately(self) -> None:
        self.stop()
        self.stop_now = True
        self.grace_deadline = time.monotonic()
        for child in self.pool.busy():
            self.pool.kill(child, "shutdown")

    def _release_buffer(self) -> None:
        if not self.buffer:
            return
        ids = [job.id for job in self.buffer]
        self.buffer.clear()
        # If the database is unreachable now, the jobs stay reserved by this worker and
        # come back when it unregisters, or through lease recovery if it cannot.
        self._db(
            "releasing jobs",
            lambda: self.backend.release(self.worker_id, ids, now=utcnow(), reason="shutdown"),
        )

    def _check_drained(self) -> None:
        queues = self.config.queues or (None,)
        active = tuple(sorted(ACTIVE_STATUSES))

        def any_active() -> bool:
            return any(
                self.backend.list_jobs(JobFilter(queue=q, statuses=active, limit=1)) for q in queues
            )

        if self._db("checking queues", any_active) is False:
            log.info("burst mode: the queues are drained")
            self.stop()

    def _shutdown(self) -> None:
        """Leave nothing behind: children gone, outcomes written, worker unregistered."""
        self.stopping = True
        self._release_buffer()
        deadline = time.monotonic() + self.config.kill_grace + 5
        self.pool.close_idle()
        while self.pool.children and time.monotonic() < deadline:
            for child in self.pool.busy():
                self.pool.kill(child, "shutdown")
            self._reap()
            if self.pool.children:
                time.sleep(0.01)
        for child in list(self.pool.children.values()):
            self.pool.kill(child, "shutdown")
        write_deadline = time.monotonic() + 30
        while self.pending and time.monotonic() < write_deadline:
            self._db_retry_at = min(self._db_retry_at, time.monotonic() + 1)
            self._flush()
            if self.pending:
                time.sleep(0.2)
        if self.pending:
            log.error(
                "could not record %d outcomes (database unreachable); those jobs will be "
                "recovered when this worker's lease expires",
                len(self.pending),
            )
        with contextlib.suppress(BackendUnavailable):
            if self.worker_id:
                self.backend.unregister_worker(self.worker_id, now=utcnow())
