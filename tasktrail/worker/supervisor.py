"""The worker client: one supervisor process per host-level worker.

It alone talks to the backend. Its loop moves jobs from the database to its pre-forked
children and their outcomes back (:mod:`.flow`), never holding more than ``reserve``;
enforces timeouts, replaces children that die, heartbeats its lease, recovers the jobs
of workers whose lease expired, fires due schedules, kills jobs whose cancellation was
asked, and shuts down without losing a job. With ``--metrics-port`` it serves its
own metrics from the same loop (:mod:`.metrics`).

Its process count can change while it runs: asked through the database (``tasktrail
workers scale``, read once a second and at once on a wake-up), by SIGTTIN / SIGTTOU
(one more / one fewer), or by itself within ``--autoscale MIN,MAX``. A child retired
by a scale-down takes no new job, gives back those planned for it, and exits once idle:
what it runs finishes. Queues paused fleet-wide (``tasktrail queues pause``) are left
out of its claims from the next second on.
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
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..backends.base import JobFilter, WorkerControl
from ..errors import BackendUnavailable, ConfigurationError
from ..job import ACTIVE_STATUSES, WorkerInfo
from .config import MAX_PROCESSES, WorkerConfig
from .db import UNREACHABLE, Unreachable
from .flow import JobFlow
from .pool import Child, ChildPool
from .signals import STOPPING, SignalInbox

if TYPE_CHECKING:
    from ..app import App
    from ..backends.base import Backend
    from ..clock import Clock
    from .metrics import MetricsServer

__all__ = ["Supervisor", "WorkerConfig"]

T = TypeVar("T")
log = logging.getLogger("tasktrail.worker")
#: Why a job planned for a child that is being retired goes back (``interrupted``).
RETIRED = "not begun: its process was retired (the worker scaled down)"


class Supervisor:
    """Runs one worker client in the current process. See the module docstring.

    It reads the time from ``clock`` (the app's by default), and so does its job flow.
    """

    def __init__(self, app: App, config: WorkerConfig, *, clock: Clock | None = None) -> None:
        from ..task import validate_name

        for queue in config.queues:
            validate_name(queue, "queue name")
        self.app = app
        self.config = config
        self.clock = app.clock if clock is None else clock
        self.name = config.name or f"{socket.gethostname()}:{os.getpid()}"
        self.worker_id = 0
        self.stopping = False
        self.stop_now = False
        self.grace_deadline = 0.0
        self._rng = random.Random()
        self._selector = selectors.DefaultSelector()
        self.pool = ChildPool(app, self._selector, config.max_tasks_per_child)
        # Set by _open, once the database answers.
        self.backend: Backend
        self.flow: JobFlow
        self._signals = SignalInbox()
        self._next_heartbeat = 0.0
        self._next_recover = 0.0
        self._last_step: float | None = None  # when the loop last turned (monotonic)
        self._next_duties = 0.0
        self._db_retry_at = 0.0
        self._db_failures = 0
        self._wake_fd: int | None = None
        self._paused: frozenset[str] = frozenset()  # queues paused fleet-wide
        self._control_due = False  # a wake-up announced a control request
        self._metrics: MetricsServer | None = None  # with --metrics-port

    # -- the loop -------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped by a signal (or, in burst mode, until the queues are drained)."""
        self._install_signals()
        opened = False
        try:
            self._listen_for_metrics()
            opened = self._open()
            if not opened:
                log.info("worker %s stopped before the database could be reached", self.name)
                return 0
            if self.app.periodics:
                self.app.schedules.sync()
            autoscale = self.config.autoscale
            log.info(
                "worker %s (id %s) started: %d processes%s, reserve %d, queues %s, %s",
                self.name, self.worker_id, self.flow.processes,
                f" (autoscale {autoscale[0]}-{autoscale[1]})" if autoscale else "",
                self.flow.reserve_limit, ",".join(self.config.queues) or "all",
                self.backend.url,
            )  # fmt: skip
            if self._metrics is not None:
                self._metrics.serve(self._selector)
            for _ in range(self.flow.processes):
                self.pool.spawn()
            self._control()  # before the first claim: none from a paused queue
            while not self._finished():
                self._step()
                self._wait()
        finally:
            if opened:
                self._shutdown()
            if self._metrics is not None:
                self._metrics.close()
            self._restore_signals()
        log.info("worker %s stopped", self.name)
        return 0

    def _listen_for_metrics(self) -> None:
        """With ``--metrics-port``, bind it now: a port in use, or no prometheus_client,
        stops the worker before it takes a job. (Nothing is imported without it.)"""
        port = self.config.metrics_port
        if port is None:
            return
        try:
            from .metrics import MetricsServer
        except ImportError as exc:
            raise ConfigurationError(
                f"--metrics-port needs prometheus_client: pip install 'tasktrail[dashboard]' "
                f"({exc})"
            ) from None
        self._metrics = MetricsServer(self, self.config.metrics_host, port, clock=self.clock)
        log.info("worker %s: metrics at %s", self.name, self._metrics.url)

    def _open(self) -> bool:
        """Reach the database and register; while it is unreachable, retry with backoff
        (a worker started during an outage, or by a service manager before the database,
        waits for it rather than exiting). False if a signal stopped it first."""
        delay = 0.25
        while True:
            try:
                if not hasattr(self, "flow"):
                    self.backend = self.app.backend
                    self.flow = JobFlow(
                        self.app,
                        self.backend,
                        self.pool,
                        self.config,
                        self._db,
                        self.name,
                        clock=self.clock,
                    )
                self._register()
                return True
            except BackendUnavailable as exc:
                delay = min(delay * 2, max(1.0, self.config.lease_seconds / 3))
                log.warning("cannot start yet (%s); trying again in %.1fs", exc, delay)
            if self._signalled_within(delay):
                return False

    def _signalled_within(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for SIGTERM or SIGINT (before any child exists)."""
        deadline = self.clock.monotonic() + seconds
        while (left := deadline - self.clock.monotonic()) > 0:
            for key, _ in self._selector.select(left):
                if key.data == "signal":
                    self._signals.drain()
            if any(signum in STOPPING for signum in self._signals.pending()):
                return True
        return False

    def _step(self) -> None:
        self._after_pause(self.clock.monotonic())
        self._handle_signals()
        self._reap()
        for child in self.pool.children.values():
            if child.retiring and not child.inflight and not child.eof:
                self.pool.close(child)  # retired and done: it exits
        self._enforce_deadlines()
        monotonic = self.clock.monotonic()
        if monotonic >= self._next_heartbeat:
            self._heartbeat()
        self.flow.dispatch()
        self.flow.give_back_late(self.clock.monotonic())
        if self._control_due and not self.stopping:
            self._control()  # a queue paused a moment ago: not in this claim
        self.flow.exchange(self.worker_id, claiming=not self.stopping)
        self.flow.dispatch()
        # Recovery and duties come after the claim, so a job a wake-up announced does
        # not wait a round trip for them; what they make claimable is claimed at once.
        woke = monotonic >= self._next_recover and self._recover()
        woke = (monotonic >= self._next_duties and self._duties(monotonic)) or woke
        if woke:
            self.flow.exchange(self.worker_id, claiming=not self.stopping)
            self.flow.dispatch()
        if self.config.burst and not self.stopping and self.flow.idle():
            self._check_drained()

    def _finished(self) -> bool:
        return (
            self.stopping
            and not self.pool.busy()
            and (
                not self.flow.pending
                or self.stop_now
                or self.clock.monotonic() > self.grace_deadline + 60
            )
        )

    def _wait(self) -> None:
        if self._finished():
            return
        monotonic = self.clock.monotonic()
        timeout = min(self.config.poll_interval, self._next_heartbeat - monotonic)
        if self.flow.pending and monotonic >= self._db_retry_at:
            timeout = 0.0
        if self.flow.can_dispatch():
            timeout = 0.0
        if not self.stopping and (refill := self.flow.next_refill(monotonic)) is not None:
            timeout = min(timeout, refill - monotonic)
        if (expiry := self.flow.next_expiry()) is not None:
            timeout = min(timeout, expiry - monotonic)
        for child in self.pool.children.values():
            head = child.assignment
            if head and head.deadline and child.stop_reason is None:
                timeout = min(timeout, head.deadline - monotonic)
            if child.kill_at is not None and not child.kill_sent:
                timeout = min(timeout, child.kill_at - monotonic)
        if self.stopping:
            timeout = min(timeout, self.grace_deadline - monotonic, 0.1)
        for key, _ in self._selector.select(max(0.0, timeout)):
            if isinstance(key.data, Child):
                for message in self.pool.read(key.data):
                    self.flow.on_message(key.data, message)
            elif key.data == "signal":
                self._signals.drain()
            elif key.data == "metrics" and self._metrics is not None:
                self._metrics.ready(key.fileobj)
            elif key.data == "wake":
                cancel = self.backend.consume_wakeups()
                self._sync_wake_fd()
                self.flow.wake()
                if cancel:  # look at the cancel and control requests now
                    self._next_duties = self.clock.monotonic()
                    self._control_due = True

    # -- talking to the backend -------------------------------------------------------

    def _db(self, what: str, call: Callable[[], T]) -> T | Unreachable:
        """Run a backend call (a :class:`~.db.DatabaseCall`); on a connection failure log
        it, back off and return ``UNREACHABLE``, as it does without calling while it backs
        off.

        The backoff never grows past a heartbeat interval: once the database is back,
        every live worker renews its lease before anyone may think it lost. And a worker
        that was cut off waits a whole lease before it recovers others: during an outage
        nobody could heartbeat, and the others need that long to renew theirs. (So does a
        new worker: see _register.)
        """
        if self.clock.monotonic() < self._db_retry_at:
            return UNREACHABLE
        try:
            result = call()
        except BackendUnavailable as exc:
            self._db_failures += 1
            self.pool.tally.database_errors += 1
            cap = min(30.0, self.config.lease_seconds / 3)
            delay = min(cap, 0.1 * 2 ** min(self._db_failures, 10)) * self._rng.uniform(0.8, 1.2)
            self._db_retry_at = self.clock.monotonic() + delay
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            return UNREACHABLE
        if self._db_failures:
            log.info("database reachable again")
            self._next_recover = max(
                self._next_recover, self.clock.monotonic() + self.config.lease_seconds
            )
        self._db_failures = 0
        return result

    def _register(self) -> None:
        info = WorkerInfo(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            processes=self.flow.processes,
            reserve=self.flow.reserve_limit,
            queues=self.config.queues,
            lease_seconds=self.config.lease_seconds,
            autoscale=self.config.autoscale,
        )
        self.worker_id = self.backend.register_worker(info, now=self.clock.now())
        self._next_heartbeat = self.clock.monotonic() + self.config.lease_seconds / 3
        # A new worker cannot tell whether the database was just unreachable for everyone
        # (all leases expired, every worker about to renew its own): it acts on expired
        # leases once it has been connected for a whole lease itself, as after an outage.
        self._next_recover = max(
            self._next_recover, self.clock.monotonic() + self.config.lease_seconds
        )
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
        alive = self._db(
            "heartbeat", lambda: self.backend.heartbeat(self.worker_id, now=self.clock.now())
        )
        if alive is UNREACHABLE:
            return
        self._next_heartbeat = self.clock.monotonic() + self.config.lease_seconds / 3
        self._sync_wake_fd()
        if not alive and not self.stopping:
            log.error(
                "worker %s (id %s) was declared lost (its lease expired) and its jobs were "
                "recovered by others; dropping the jobs it held and registering again",
                self.name,
                self.worker_id,
            )
            self.flow.drop()
            for child in self.pool.busy():
                self.pool.kill(child, "abandon")
            self._db("register", self._register)

    def _after_pause(self, monotonic: float) -> None:
        """A loop that did not turn for half a lease was paused (SIGSTOP, a suspended
        host, a call that waited for a lock): as after an outage, this worker acts on
        expired leases only once it has run for a whole lease again. Other workers'
        leases may have lapsed only because of it: on SQLite, a process stopped inside
        its write transaction keeps every other worker from renewing theirs."""
        last, self._last_step = self._last_step, monotonic
        if last is not None and monotonic - last > self.config.lease_seconds / 2:
            log.warning(
                "worker %s did not run for %.1fs: recovering others' jobs only after a "
                "lease of its own", self.name, monotonic - last,
            )  # fmt: skip
            self._next_recover = max(self._next_recover, monotonic + self.config.lease_seconds)

    def _recover(self) -> bool:
        """Recover the jobs of lost workers; True if there were any (to claim now)."""
        self._next_recover = self.clock.monotonic() + max(1.0, self.config.lease_seconds / 2)
        if self._db_failures:
            return False  # not while the database is unreachable: see _db
        recovered = self._db("recover", lambda: self.backend.recover_lost(now=self.clock.now()))
        if recovered is UNREACHABLE:
            return False
        for item in recovered:
            log.warning(
                "recovered job %s from lost worker %s: %s -> %s",
                item.job_id, item.worker_id, item.previous_status, item.new_status,
            )  # fmt: skip
        if recovered:
            self.flow.wake()
        return bool(recovered)

    def _duties(self, monotonic: float) -> bool:
        """Every second: apply what it was asked (a process count, paused queues), fire
        due schedules, and stop jobs whose cancellation was asked. True if a schedule
        fired (a job to claim now)."""
        self._next_duties = monotonic + 1.0
        fired = False
        if not self.stopping:
            self._control()
            self._autoscale(monotonic)
            ticks = self._db(
                "firing schedules",
                lambda: self.backend.fire_due_schedules(
                    now=self.clock.now(),
                    worker_id=self.worker_id,
                    make_job=self.app._schedule_job,
                ),
            )
            if ticks is not UNREACHABLE:
                for tick in ticks:
                    log.info(
                        "schedule %s, due %s: %s%s", tick.schedule, tick.due_at.isoformat(),
                        tick.outcome,
                        f" job {tick.job_id}" if tick.job_id else f" ({tick.reason})",
                    )  # fmt: skip
                    self.flow.wake()
                fired = any(tick.job_id for tick in ticks)
        holders = {
            assignment.job.id: child for child in self.pool.busy() for assignment in child.inflight
        }
        if not holders:
            return fired
        requests = self._db(
            "checking cancel requests", lambda: self.backend.cancel_requests(self.worker_id)
        )
        if requests is UNREACHABLE:
            return fired
        for job_id in requests:
            if self.flow.cancel_planned(job_id):
                log.warning("job %s: cancel requested before it was sent to a child", job_id)
                continue
            child = holders.get(job_id)
            if child is None or child.stop_reason is not None:
                continue
            head = child.assignment
            if head is not None and head.job.id == job_id:
                log.warning("job %s: cancel requested; stopping child %s", job_id, child.pid)
                # A cancel is not a timeout: the task gets a second to clean up, not more.
                self.pool.terminate(child, "cancel", monotonic + min(1.0, self.config.kill_grace))
            else:
                self.pool.skip(child, job_id)  # it has not begun: the child drops it
        return fired

    # -- children ---------------------------------------------------------------------

    def _reap(self) -> None:
        for child, status in self.pool.reap():
            for message in self.pool.drain(child):
                self.flow.on_message(child, message)
            if child.inflight:
                self.flow.on_exit(child, status)
            elif (
                child.stop_reason is None
                and not child.retiring
                and not self.stopping
                and child.jobs_left != 0
            ):
                log.warning("idle child %s exited unexpectedly", child.pid)
            self.pool.forget(child)
            if not self.stopping and len(self._serving()) < self.flow.processes:
                self.pool.spawn()

    def _enforce_deadlines(self) -> None:
        monotonic = self.clock.monotonic()
        for child in list(self.pool.children.values()):
            head = child.assignment
            if (
                head is not None
                and head.deadline is not None
                and monotonic >= head.deadline
                and child.stop_reason is None
            ):
                log.warning(
                    "job %s ran past its %gs timeout; stopping child %s",
                    head.job.id, head.job.timeout, child.pid,
                )  # fmt: skip
                self.pool.terminate(child, "timeout", monotonic + self.config.kill_grace)
            if child.kill_at is not None and not child.kill_sent and monotonic >= child.kill_at:
                self.pool.kill(child)
        if self.stopping and monotonic >= self.grace_deadline:
            for child in self.pool.busy():
                if child.stop_reason is None:
                    self.pool.terminate(child, "shutdown", monotonic + self.config.kill_grace)

    # -- scaling, and paused queues ------------------------------------------------------

    def _serving(self) -> list[Child]:
        """The children not being retired."""
        return [child for child in self.pool.children.values() if not child.retiring]

    def scale(self, processes: int, why: str) -> None:
        """Run ``processes`` children from now on: fork the missing ones, or retire the
        idle ones first, then those holding the fewest jobs (they finish what they run);
        the reserve follows. Recorded in the workers registry."""
        processes = max(1, min(MAX_PROCESSES, processes))
        before = self.flow.processes
        self.flow.processes = processes
        self.flow.reserve_limit = self.config.reserve_for(processes)
        serving = self._serving()
        if processes > len(serving):
            # keep one still finishing its jobs rather than fork another
            for child in self.pool.children.values():
                if child.retiring and not child.eof and len(serving) < processes:
                    child.retiring = False
                    serving.append(child)
            for _ in range(processes - len(serving)):
                self.pool.spawn()
        elif processes < len(serving):
            serving.sort(key=lambda child: (len(child.inflight), child.pid))
            retired = serving[: len(serving) - processes]
            for child in retired:
                child.retiring = True
            self.flow.give_back(RETIRED, retired)
        if processes != before:
            log.info(
                "worker %s: %d -> %d processes, reserve %d (%s)",
                self.name, before, processes, self.flow.reserve_limit, why,
            )  # fmt: skip
        self._db(
            "recording the process count",
            lambda: self.backend.update_worker_processes(
                self.worker_id, processes=processes, reserve=self.flow.reserve_limit,
                now=self.clock.now(),
            ),
        )  # fmt: skip

    def _control(self) -> None:
        """Read what the worker is asked (once a second, and at once on a control
        wake-up) and apply it."""
        self._control_due = False
        control = self._db("reading control requests", self._read_control)
        if control is UNREACHABLE:
            return
        wanted = control.requested_processes
        if wanted is not None:
            self.scale(wanted, "asked through the database")
        if control.paused_queues != self._paused:
            for queue in sorted(control.paused_queues - self._paused):
                log.info("queue %s paused: no more jobs are claimed from it", queue)
            for queue in sorted(self._paused - control.paused_queues):
                log.info("queue %s resumed", queue)
            self._paused = control.paused_queues
            self.flow.wake()
        self._choose_queues()

    def _read_control(self) -> WorkerControl:
        return self.backend.worker_control(self.worker_id)

    def _choose_queues(self) -> None:
        """The queues to claim from: those served, less the paused ones. A worker of
        every queue, while some are paused, names the others that hold jobs (read
        again each second)."""
        paused = self._paused
        if self.config.queues:
            queues = tuple(queue for queue in self.config.queues if queue not in paused)
        elif paused:
            found = self._db("listing queues", self.backend.queued_queues)
            if found is UNREACHABLE:
                return
            queues = tuple(queue for queue in found if queue not in paused)
        else:
            self.flow.queues, self.flow.claimable = (), True
            return
        self.flow.queues, self.flow.claimable = queues, bool(queues)

    def _autoscale(self, monotonic: float) -> None:
        """One more process while all are busy and jobs wait; one fewer when one has
        been idle for ``autoscale_idle`` seconds; within the ``--autoscale`` range."""
        if self.config.autoscale is None:
            return
        low, high = self.config.autoscale
        serving = self._serving()
        for child in serving:
            if child.inflight:
                child.idle_since = None
            elif child.idle_since is None:
                child.idle_since = monotonic
        processes = self.flow.processes
        if processes < high and all(child.inflight for child in serving):
            if not self.flow.claimable:
                return
            queues = self.flow.queues
            waiting = self._db(
                "looking for waiting jobs",
                lambda: self.backend.has_backlog(queues, now=self.clock.now()),
            )
            if waiting is not UNREACHABLE and waiting:
                self.scale(processes + 1, "autoscale: every process busy, jobs waiting")
        elif processes > low:
            idle_for = self.config.autoscale_idle
            idle = [
                child for child in serving
                if child.idle_since is not None and monotonic - child.idle_since >= idle_for
            ]  # fmt: skip
            if idle:
                self.scale(processes - 1, f"autoscale: a process idle for {idle_for:g}s")

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
            if signum in (signal.SIGTTIN, signal.SIGTTOU):
                if not self.stopping:
                    step = 1 if signum == signal.SIGTTIN else -1
                    name = signal.Signals(signum).name
                    self.scale(self.flow.processes + step, name)
                continue
            if self.stopping:
                log.warning("second %s: stopping now", signal.Signals(signum).name)
                self._stop_immediately()
            else:
                log.info(
                    "%s: stopping; running jobs get %gs to finish",
                    signal.Signals(signum).name, self.config.grace,
                )  # fmt: skip
                self.stop()

    def stop(self) -> None:
        """Begin a graceful stop: take no new job, give back the ones not begun."""
        if self.stopping:
            return
        self.stopping = True
        self.grace_deadline = self.clock.monotonic() + self.config.grace
        self.flow.give_back("shutdown")

    def _stop_immediately(self) -> None:
        self.stop()
        self.stop_now = True
        self.grace_deadline = self.clock.monotonic()
        for child in self.pool.busy():
            self.pool.kill(child, "shutdown")

    def _check_drained(self) -> None:
        queues = self.config.queues or (None,)
        active = tuple(sorted(ACTIVE_STATUSES))

        def any_active() -> bool:
            return any(
                self.backend.list_jobs(JobFilter(queue=q, statuses=active, limit=1)) for q in queues
            )

        left = self._db("checking queues", any_active)
        if left is UNREACHABLE or left:
            return
        log.info("burst mode: the queues are drained")
        self.stop()

    def _shutdown(self) -> None:
        """Leave nothing behind: children gone, outcomes written, worker unregistered."""
        self.stop()
        deadline = self.clock.monotonic() + self.config.kill_grace + 5
        self.pool.close_idle()
        while self.pool.children and self.clock.monotonic() < deadline:
            for child in self.pool.busy():
                self.pool.kill(child, "shutdown")
            self._reap()
            if self.pool.children:
                time.sleep(0.01)
        for child in list(self.pool.children.values()):
            self.pool.kill(child, "shutdown")
        write_deadline = self.clock.monotonic() + 30
        while self.flow.pending and self.clock.monotonic() < write_deadline:
            self._db_retry_at = min(self._db_retry_at, self.clock.monotonic() + 1)
            self.flow.exchange(self.worker_id, claiming=False)
            if self.flow.pending:
                time.sleep(0.2)
        if self.flow.pending:
            log.error(
                "could not record %d outcomes (database unreachable); those jobs will be "
                "recovered when this worker's lease expires",
                len(self.flow.pending),
            )
        with contextlib.suppress(BackendUnavailable):
            if self.worker_id:
                self.backend.unregister_worker(self.worker_id, now=self.clock.now())
