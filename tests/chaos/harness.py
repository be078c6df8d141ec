"""The chaos harness: real workers, real faults, then the invariants.

One run, on one backend:

1. set up the database: a SQLite file, or a throw-away PostgreSQL cluster
   (:mod:`.cluster`) plus, for the network partition, a worker host in its own network
   namespace (:mod:`.netns`);
2. start several ``tasktrail worker`` processes (a few children each, a short lease);
3. for ``window`` seconds, enqueue the jobs in batches while the faults of a seeded
   schedule (:mod:`.faults`) hit the workers and the database, and a watcher plays the
   OOM killer (SIGKILL of a child whose resident memory passes ``oom_limit_mb``);
4. let everything drain: wait until every job is final and every lost worker was
   recovered, then stop the workers with SIGTERM;
5. check the invariants (:mod:`.invariants`) and report one line.

Nothing here sleeps and hopes: every wait is on a condition, with a deadline. Only the
fault timing (when, how long PostgreSQL stays down) is drawn from the seed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tasks
from .cluster import Cluster
from .faults import Fault, kinds_for, make_schedule
from .invariants import Figures, check, executions_from_rows
from .netns import Namespace
from .procs import Identity, alive, children, identity, rss_bytes, signal_quietly

__all__ = ["ChaosConfig", "ChaosResult", "ChaosRun", "run_chaos"]

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = "tests.chaos.tasks:app"
ACTIVE = ("queued", "reserved", "running")


@dataclass(frozen=True)
class ChaosConfig:
    """One chaos run. ``kinds=None``: every fault kind that applies to the backend."""

    backend: str = "sqlite"  # or "postgres"
    seed: int = 1
    jobs: int = 600
    window: float = 40.0  # seconds of enqueueing and faults
    workers: int = 3  # worker clients, plus one in a network namespace on PostgreSQL
    processes: int = 2  # children per worker
    lease: float = 3.0
    faults_per_minute: float = 20.0  # beyond the first of each kind
    kinds: tuple[str, ...] | None = None
    netns: bool = True
    oom_limit_mb: int = 300
    drain_timeout: float = 300.0
    run_dir: Path | None = None
    keep: bool = False
    verbose: bool = False


@dataclass
class ChaosResult:
    config: ChaosConfig
    figures: Figures
    faults: Counter[str]
    skipped: Counter[str]
    oom_kills: int
    connections_killed: int
    partition_rejected: int
    seconds: float
    run_dir: Path

    @property
    def ok(self) -> bool:
        return not self.figures.violations

    def line(self) -> str:
        """The one line a person reads."""
        f = self.figures
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(f.statuses.items()))
        faults = ", ".join(f"{kind} {n}" for kind, n in sorted(self.faults.items()))
        verdict = "OK" if self.ok else f"FAILED: {len(f.violations)} violations"
        return (
            f"chaos {self.config.backend} seed={self.config.seed}: {f.jobs} jobs ({statuses}), "
            f"{f.executions} executions; {sum(self.faults.values())} faults ({faults}); "
            f"{self.oom_kills} OOM kills, {self.connections_killed} connections killed; "
            f"recovered {f.recovered}, lost {f.lost}, duplicates {f.duplicates}, "
            f"rejected outcomes {f.rejected} ({self.partition_rejected} after a partition), "
            f"overlaps after a loss {f.overlaps_after_loss}, fan-in jobs {f.waited}; "
            f"{self.seconds:.0f}s — {verdict}"
        )


@dataclass(eq=False)
class Slot:
    """A place for one worker client; a fault may replace the worker in it."""

    index: int
    in_netns: bool
    proc: subprocess.Popen[bytes] | None = None
    name: str = ""
    generation: int = 0
    busy: bool = False  # a fault is working on it: no other fault, no surprise exit


@dataclass
class _Tally:
    faults: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    oom_kills: int = 0
    connections_killed: int = 0
    partitioned: set[int] = field(default_factory=set)  # registrations cut off
    #: Supervisors the harness killed, stopped, cut off or SIGTERMed: only their
    #: registrations may end up lost.
    disrupted: set[int] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)
    enqueued: Counter[str] = field(default_factory=Counter)


class ChaosRun:
    """One run; see the module docstring. Use :func:`run_chaos`."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.run_dir = config.run_dir or Path(
            tempfile.mkdtemp(prefix=f"tasktrail-chaos-{config.backend}-{config.seed}-")
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o755)  # the cluster's owner writes its log here
        (self.run_dir / "workers").mkdir(exist_ok=True)
        self.side_log = self.run_dir / "executions.jsonl"
        self.cluster: Cluster | None = None
        self.netns: Namespace | None = None
        self.dsn = ""
        self.tally = _Tally()
        self.slots: list[Slot] = []
        self._lock = threading.RLock()  # slots' state
        self._db_lock = threading.Lock()  # the harness's one database connection
        self._stop = threading.Event()  # the run is over: the watcher stops
        self._abort = threading.Event()  # tearing down: every wait gives up at once
        self._partition_rejected = 0
        self._threads: list[threading.Thread] = []
        self._db_busy = False  # a fault is on the database or the network
        self._started = 0.0

    # -- logging ------------------------------------------------------------------------

    def log(self, message: str) -> None:
        line = f"[{time.monotonic() - self._started:7.2f}s] {message}"
        with open(self.run_dir / "harness.log", "a", encoding="utf-8") as file:
            file.write(line + "\n")
        if self.config.verbose:
            print(line, file=sys.stderr, flush=True)

    def violate(self, message: str) -> None:
        self.log(f"VIOLATION: {message}")
        self.tally.violations.append(message)

    # -- the run ------------------------------------------------------------------------

    def run(self) -> ChaosResult:
        self._started = time.monotonic()
        figures = Figures()
        try:
            self._setup()
            for index in range(self.config.workers):
                self.slots.append(Slot(index, in_netns=False))
            if self.netns is not None:
                self.slots.append(Slot(self.config.workers, in_netns=True))
            for slot in self.slots:
                self._start_worker(slot)
            watcher = threading.Thread(target=self._watch, name="watcher", daemon=True)
            watcher.start()
            self._inject()
            self._drain()
            self._stop.set()
            watcher.join()
            figures = self._collect()
        except Exception as exc:
            self.violate(f"the harness failed: {type(exc).__name__}: {exc}")
            raise
        finally:
            self._stop.set()
            self._abort.set()
            self._teardown()
            figures.violations[:0] = self.tally.violations
        return ChaosResult(
            config=self.config,
            figures=figures,
            faults=self.tally.faults,
            skipped=self.tally.skipped,
            oom_kills=self.tally.oom_kills,
            connections_killed=self.tally.connections_killed,
            partition_rejected=self._partition_rejected,
            seconds=time.monotonic() - self._started,
            run_dir=self.run_dir,
        )

    def _setup(self) -> None:
        config = self.config
        self.side_log.touch()
        if config.backend == "sqlite":
            self.dsn = f"sqlite:///{self.run_dir / 'jobs.db'}"
        elif config.backend == "postgres":
            self.cluster = Cluster(self.run_dir / "postgres.log")
            self.cluster.create()
            self.dsn = self.cluster.conninfo
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("CREATE SCHEMA chaos_side")
                conn.execute(
                    "CREATE TABLE chaos_side.executions (job_id bigint, "
                    "attempt integer, pid integer, ppid integer, phase text, "
                    "at double precision)"
                )
            if config.netns and "partition" in self.kinds:
                self.netns = Namespace(self.cluster.port)
                self.netns.create(str(self.run_dir / "forwarder.log"))
        else:
            raise ValueError(f"unknown backend {config.backend!r}")
        tasks.app.configure(self.dsn)
        with self._db_lock:
            tasks.app.backend  # noqa: B018 - creates the schema before the workers start
        self.log(f"set up {config.backend} at {self.dsn} in {self.run_dir}")

    @property
    def kinds(self) -> tuple[str, ...]:
        applicable = kinds_for(self.config.backend, netns=self.config.netns)
        if self.config.kinds is None:
            return applicable
        return tuple(kind for kind in self.config.kinds if kind in applicable)

    def _teardown(self) -> None:
        for slot in self.slots:
            if slot.proc is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(slot.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    slot.proc.wait(10)
        for thread in self._threads:
            thread.join(timeout=30)
        with contextlib.suppress(Exception):
            tasks.app.close()
        if self.netns is not None:
            self.netns.close()
        if self.cluster is not None:
            log = self.cluster.log_path
            saved = self.run_dir / "postgres-saved.log"
            with contextlib.suppress(OSError):
                shutil.copyfile(log, saved)
            self.cluster.drop()

    # -- workers ------------------------------------------------------------------------

    def _start_worker(self, slot: Slot) -> None:
        config = self.config
        slot.generation += 1
        slot.name = f"chaos-{'n' if slot.in_netns else 'w'}{slot.index}-{slot.generation}"
        argv = [
            str(Path(sys.executable).parent / "tasktrail"), "worker", "--app", APP_SPEC,
            "--name", slot.name, "--processes", str(config.processes),
            "--lease", str(config.lease), "--kill-grace", "0.5", "--poll-interval", "0.2",
            "--grace", "1.0",
        ]  # fmt: skip
        env = {
            **os.environ,
            "TASKTRAIL_DSN": self.dsn,
            tasks.SIDE_LOG_ENV: str(self.side_log),
            "PYTHONPATH": str(REPO_ROOT),
        }
        env.pop("TASKTRAIL_APP", None)
        if config.backend == "postgres":
            env[tasks.SIDE_DSN_ENV] = self.dsn
        if slot.in_netns:
            assert self.netns is not None
            via = f"postgresql://postgres@{self.netns.host_addr}:{self.netns.listen_port}/chaos"
            env["TASKTRAIL_DSN"] = env[tasks.SIDE_DSN_ENV] = via
            argv = self.netns.command(argv)
        with open(self.run_dir / "workers" / f"{slot.name}.log", "wb") as log:
            slot.proc = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.log(f"started worker {slot.name} (pid {slot.proc.pid})")

    def _up_slots(self) -> list[Slot]:
        with self._lock:
            return [s for s in self.slots if not s.busy and s.proc and s.proc.poll() is None]

    def _claim(self, slot: Slot) -> bool:
        with self._lock:
            if slot.busy or slot.proc is None or slot.proc.poll() is not None:
                return False
            slot.busy = True
            return True

    def _release(self, slot: Slot) -> None:
        with self._lock:
            slot.busy = False

    def _kill_supervisor(self, slot: Slot, why: str) -> None:
        """SIGKILL the supervisor alone; its children must die with it (PDEATHSIG)."""
        assert slot.proc is not None
        kids = [i for i in (identity(pid) for pid in children(slot.proc.pid)) if i]
        self.tally.disrupted.add(slot.proc.pid)
        slot.proc.send_signal(signal.SIGKILL)
        slot.proc.wait(30)
        self.log(f"killed supervisor {slot.name} ({why}); children {[k[0] for k in kids]}")
        self._expect_gone(kids, f"children of killed supervisor {slot.name}")

    def _expect_gone(self, processes: list[Identity], what: str) -> None:
        if not self._wait(lambda: not any(alive(p) for p in processes), 15.0, db=False):
            survivors = [p[0] for p in processes if alive(p)]
            self.violate(f"{what} survived it: {survivors}")
            for pid in survivors:
                signal_quietly(pid, signal.SIGKILL)

    def _registration(self, slot: Slot) -> int | None:
        """The id of the running registration of the worker in ``slot``."""

        def find() -> int | None:
            rows = [w.id for w in tasks.app.workers(limit=None) if w.name == slot.name]
            return max(rows) if rows else None

        deadline = time.monotonic() + 20.0
        while not self._abort.is_set():
            found = self._query(find)
            if found is not None:
                return int(found)
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return None

    def _is_lost(self, worker_id: int) -> bool:
        def lost() -> bool:
            rows = tasks.app.workers(include_stopped=True, limit=None)
            return any(w.id == worker_id and w.status == "lost" for w in rows)

        return bool(self._query(lost))

    # -- database access from the harness -------------------------------------------------

    def _query(self, call: Callable[[], Any]) -> Any:
        """One call on the harness's connection; None if the database is unreachable."""
        with self._db_lock:
            try:
                return call()
            except Exception as exc:  # outages are expected here
                self.log(f"harness query failed: {type(exc).__name__}: {exc}")
                return None

    def _wait(self, condition: Callable[[], Any], timeout: float, db: bool = True) -> bool:
        """Poll ``condition`` until it is true or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not self._abort.is_set():
            if condition():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1 if db else 0.02)
        return False

    # -- injection ------------------------------------------------------------------------

    def _inject(self) -> None:
        config = self.config
        schedule = make_schedule(config.seed, self.kinds, config.window, config.faults_per_minute)
        self.log("schedule:\n" + "\n".join(f.describe() for f in schedule))
        producer = threading.Thread(target=self._produce, name="producer", daemon=True)
        producer.start()
        pending = list(schedule)
        begin = time.monotonic()
        end = begin + config.window
        while pending and time.monotonic() < end:
            fault = pending[0]
            delay = begin + fault.at - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 0.1))
                continue
            pending.pop(0)
            if not self._fire(fault):
                # its target is busy with another fault: try again a little later
                later = Fault(fault.at + 1.0, fault.kind, fault.pick, fault.extra)
                if later.at < config.window:
                    pending.append(later)
                    pending.sort(key=lambda f: f.at)
                else:
                    self.tally.skipped[fault.kind] += 1
        self.tally.skipped.update(f.kind for f in pending)
        while time.monotonic() < end:
            time.sleep(0.1)
        producer.join()
        self.log("window over: waiting for the faults in progress to end")
        for thread in list(self._threads):
            thread.join(timeout=180)
            if thread.is_alive():
                self.violate(f"fault {thread.name} did not end within 180s")

    def _fire(self, fault: Fault) -> bool:
        """Start ``fault`` in its own thread; False if its target is busy."""
        action = getattr(self, f"_fault_{fault.kind}")
        claimed = self._claim_for(fault)
        if claimed is None:
            return False
        self.tally.faults[fault.kind] += 1
        self.log(f"fault: {fault.describe()}")

        def run() -> None:
            try:
                action(fault, claimed)
            except Exception as exc:
                self.violate(f"fault {fault.kind} failed in the harness: {exc!r}")
            finally:
                with self._lock:
                    for slot in claimed.get("slots", []):
                        slot.busy = False
                    if claimed.get("db"):
                        self._db_busy = False

        thread = threading.Thread(target=run, name=f"{fault.kind}@{fault.at:.1f}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return True

    def _claim_for(self, fault: Fault) -> dict[str, Any] | None:
        """Take the slots and the database the fault needs, or None if one is busy."""
        kind = fault.kind
        with self._lock:
            up = [s for s in self.slots if not s.busy and s.proc and s.proc.poll() is None]
            plain = [s for s in up if not s.in_netns]
            needs_db = kind in ("pg_restart", "pg_stop", "partition")
            if needs_db and self._db_busy:
                return None
            slots: list[Slot]
            if kind in ("kill_supervisor", "stall"):
                if not up:
                    return None
                slots = [up[int(fault.pick * len(up))]]
            elif kind == "partition":
                slots = [s for s in up if s.in_netns]
                if not slots:
                    return None
            elif kind == "sigterm":
                if not plain:
                    return None
                slots = up
            else:
                slots = []
            for slot in slots:
                slot.busy = True
            if needs_db:
                self._db_busy = True
            return {"slots": slots, "db": needs_db}

    # -- the faults -----------------------------------------------------------------------

    def _fault_kill_child(self, fault: Fault, claimed: dict[str, Any]) -> None:
        up = [slot.proc.pid for slot in self._up_slots() if slot.proc is not None]
        kids = children(up[int(fault.pick * len(up))]) if up else []
        if not kids:
            self.log("kill_child: no child to kill")
            return
        victim = kids[int(fault.extra * len(kids))]
        signal_quietly(victim, signal.SIGKILL)
        self.log(f"killed child {victim}")

    def _fault_kill_supervisor(self, fault: Fault, claimed: dict[str, Any]) -> None:
        [slot] = claimed["slots"]
        self._kill_supervisor(slot, "fault")
        self._start_worker(slot)

    def _fault_stall(self, fault: Fault, claimed: dict[str, Any]) -> None:
        """SIGSTOP the supervisor until the database declares it lost (its children go
        on running, orphaned); then let it go on (it must find its outcomes refused) or
        SIGKILL it (its children must die with it)."""
        [slot] = claimed["slots"]
        assert slot.proc is not None
        worker_id = self._registration(slot)
        if worker_id is None:
            self.log(f"stall: {slot.name} is not registered; skipped")
            return
        self.tally.disrupted.add(slot.proc.pid)
        slot.proc.send_signal(signal.SIGSTOP)
        self.log(f"stopped supervisor {slot.name} (worker {worker_id})")
        if not self._wait(lambda: self._is_lost(worker_id), 60.0):
            self.log(f"stall: worker {worker_id} was not declared lost in 60s")
        self._settle(fault.extra * 2)
        if fault.extra < 0.5:
            slot.proc.send_signal(signal.SIGCONT)
            self.log(f"resumed supervisor {slot.name}")
        else:
            self._kill_supervisor(slot, "stalled")
            self._start_worker(slot)

    def _fault_sigterm(self, fault: Fault, claimed: dict[str, Any]) -> None:
        """SIGTERM every idle-of-faults worker under full load; each must stop cleanly
        (exit 0, children gone); then new workers take their places."""
        slots: list[Slot] = claimed["slots"]
        kids: dict[int, list[Identity]] = {}
        for slot in slots:
            # Under load, so registered: a worker still starting up has no handler yet
            # and dies of the signal (holding nothing), as any process would.
            self._registration(slot)
            assert slot.proc is not None
            kids[slot.index] = [i for i in (identity(p) for p in children(slot.proc.pid)) if i]
            self.tally.disrupted.add(slot.proc.pid)
            slot.proc.send_signal(signal.SIGTERM)
        for slot in slots:
            assert slot.proc is not None
            try:
                code = slot.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.violate(f"worker {slot.name} did not stop within 90s of SIGTERM")
                slot.proc.kill()
                code = slot.proc.wait(30)
            if code != 0:
                self.violate(f"worker {slot.name} exited {code} after SIGTERM, not 0")
            self._expect_gone(kids[slot.index], f"children of stopped worker {slot.name}")
            self.log(f"worker {slot.name} stopped by SIGTERM (exit {code})")
            self._start_worker(slot)

    def _fault_hang(self, fault: Fault, claimed: dict[str, Any]) -> None:
        self._enqueue([tasks.hang.prepare(int(fault.at * 1000))])

    def _fault_hog(self, fault: Fault, claimed: dict[str, Any]) -> None:
        self._enqueue([tasks.hog.prepare(int(fault.at * 1000))])

    def _fault_pg_restart(self, fault: Fault, claimed: dict[str, Any]) -> None:
        assert self.cluster is not None
        mode = "immediate" if fault.extra < 0.4 else "fast"
        self.cluster.restart(mode)
        self.log(f"restarted PostgreSQL ({mode})")

    def _fault_pg_stop(self, fault: Fault, claimed: dict[str, Any]) -> None:
        assert self.cluster is not None
        self.cluster.stop("fast")
        self.log("stopped PostgreSQL")
        self._settle(8.0 + 4.0 * fault.extra)  # the outage's length is part of the fault
        self.cluster.start()
        self.log("started PostgreSQL again")

    def _fault_pg_terminate(self, fault: Fault, claimed: dict[str, Any]) -> None:
        import psycopg

        own = f"tasktrail {os.uname().nodename}:{os.getpid()}"
        chooser = random.Random(fault.pick)
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                pids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE "
                        "'tasktrail %%' AND application_name <> %s ORDER BY pid",
                        (own,),
                    )
                ]
                doomed = [pid for pid in pids if chooser.random() < 0.6] or pids[:1]
                for pid in doomed:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        except psycopg.Error as exc:
            self.log(f"pg_terminate: database unreachable ({exc}); skipped")
            return
        self.tally.connections_killed += len(doomed)
        self.log(f"terminated {len(doomed)} of {len(pids)} worker connections")

    def _fault_partition(self, fault: Fault, claimed: dict[str, Any]) -> None:
        """Cut the namespaced worker off while it runs a job, keep it cut until the
        database declares it lost, then bring its link back."""
        assert self.netns is not None
        [slot] = claimed["slots"]
        worker_id = self._registration(slot)
        if worker_id is None:
            self.log("partition: the namespaced worker is not registered; skipped")
            return

        def running_a_while() -> bool:
            jobs = tasks.app.jobs(status="running", worker_id=worker_id, limit=None)
            now = time.time()
            return any(
                job.task == tasks.work.name
                and job.started_at is not None
                and job.started_at.timestamp() + float(job.args[1]) - now > 0.3
                for job in jobs
            )

        self._wait(lambda: self._query(running_a_while), 30.0)
        assert slot.proc is not None
        self.tally.disrupted.add(slot.proc.pid)
        self.netns.link(up=False)
        self.log(f"link of {slot.name} (worker {worker_id}) down")
        with self._lock:
            self.tally.partitioned.add(worker_id)
        if not self._wait(lambda: self._is_lost(worker_id), 60.0):
            self.log(f"partition: worker {worker_id} was not declared lost in 60s")
        self._settle(1.0 + 2.0 * fault.extra)
        self.netns.link(up=True)
        self.log(f"link of {slot.name} up again")

    def _settle(self, seconds: float) -> None:
        """Part of a fault's seeded timing (an outage's length), not a wait for a result."""
        self._abort.wait(seconds)

    # -- load and the watcher ---------------------------------------------------------------

    def _enqueue(self, batch: list[Any]) -> list[Any]:
        """Enqueue ``batch`` (retrying through outages); its handles, or [] if it could
        not be enqueued in time."""
        deadline = time.monotonic() + 120
        while True:
            with self._db_lock:
                try:
                    handles = tasks.app.enqueue_many(batch)
                    self.tally.enqueued.update(job.task for job in batch)
                    return handles
                except Exception as exc:
                    # An outage. If it hit after the commit, the retry makes a second copy
                    # of the batch: at-least-once enqueue, which the checks allow.
                    self.log(f"enqueue failed ({type(exc).__name__}: {exc}); retrying")
            if time.monotonic() > deadline:
                self.violate("could not enqueue a batch within 120s")
                return []
            time.sleep(0.5)

    def _produce(self) -> None:
        """Enqueue the jobs: a third at once (a backlog from the start), the rest in
        batches over the first three quarters of the window."""
        config = self.config
        rng = random.Random(config.seed * 7919 + 1)
        spread = config.window * 0.75
        batches = max(1, int(spread / 0.25))
        upfront = config.jobs // 3
        begin = time.monotonic()
        index = 0
        for number in range(batches + 1):
            due = begin + spread * number / batches
            while time.monotonic() < due and not self._abort.is_set():
                time.sleep(min(0.05, max(0.0, due - time.monotonic())))
            target = upfront + (config.jobs - upfront) * number // batches
            batch = []
            while index < target:
                roll = rng.random()
                if roll < 0.70:
                    seconds = rng.uniform(0.01, 0.1)
                elif roll < 0.95:
                    seconds = rng.uniform(0.1, 0.5)
                else:
                    seconds = rng.uniform(0.5, 2.0)
                batch.append(tasks.work.prepare(index, round(seconds, 3), rng.random() < 0.03))
                index += 1
            for start in range(0, len(batch), 500):
                handles = self._enqueue(batch[start : start + 500])
                if handles:
                    # fan-in: a job that waits for the whole batch, whatever the faults
                    # do to it, and must run exactly once after the last of it ended
                    self._enqueue([tasks.gather.prepare(index, after=handles,
                                                        after_policy="finished")])  # fmt: skip

    def _watch(self) -> None:
        """Until the run ends: play the OOM killer, and notice workers that die alone."""
        limit = self.config.oom_limit_mb * 1024 * 1024
        while not self._stop.is_set():
            with self._lock:
                slots = list(self.slots)
            for slot in slots:
                proc = slot.proc
                if proc is None:
                    continue
                with self._lock:
                    surprise = not slot.busy and proc.poll() is not None
                    if surprise:
                        slot.busy = True
                if surprise:
                    self.violate(f"worker {slot.name} exited by itself ({proc.returncode})")
                    self._start_worker(slot)
                    self._release(slot)
                    continue
                for pid in children(proc.pid):
                    if rss_bytes(pid) > limit:
                        signal_quietly(pid, signal.SIGKILL)
                        self.tally.oom_kills += 1
                        self.log(f"OOM killer: killed child {pid} of {slot.name}")
            time.sleep(0.05)

    # -- the end --------------------------------------------------------------------------

    def _drain(self) -> None:
        config = self.config

        def all_final() -> bool:
            return not tasks.app.jobs(status=ACTIVE, limit=1)

        if not self._wait(lambda: self._query(all_final), config.drain_timeout):
            self.violate(f"jobs still active {config.drain_timeout:g}s after the faults ended")
        live = {slot.name for slot in self.slots}

        def only_live_registered() -> bool:
            return all(w.name in live for w in tasks.app.workers(limit=None))

        if not self._wait(lambda: self._query(only_live_registered), config.lease * 4 + 30):
            self.log("dead workers still registered as running after their lease")
        for slot in self.slots:
            with self._lock:
                slot.busy = True
            self._registration(slot)
            assert slot.proc is not None
            slot.proc.send_signal(signal.SIGTERM)
        for slot in self.slots:
            assert slot.proc is not None
            try:
                code = slot.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.violate(f"worker {slot.name} did not stop within 90s of SIGTERM")
                continue
            if code != 0:
                self.violate(f"worker {slot.name} exited {code} at the end, not 0")
        self.log("every worker stopped")

    def _collect(self) -> Figures:
        with self._db_lock:
            app = tasks.app
            jobs = app.jobs(limit=None)
            events_of = {job.id: app.backend.list_events(job.id) for job in jobs}
            workers = app.workers(include_stopped=True, limit=None)
        rows = list(self._side_rows())
        figures = check(
            jobs, events_of, workers, executions_from_rows(rows), dict(self.tally.enqueued)
        )
        for worker in workers:
            if worker.status == "lost" and worker.pid not in self.tally.disrupted:
                figures.violate(
                    f"worker {worker.id} ({worker.name}) was declared lost, though the "
                    "harness never stopped, killed or cut it off"
                )
        self._partition_rejected = sum(
            1
            for events in events_of.values()
            for event in events
            if event.kind == "outcome_rejected" and event.worker_id in self.tally.partitioned
        )
        return figures

    def _side_rows(self) -> Iterator[dict[str, Any]]:
        with open(self.side_log, encoding="utf-8") as file:
            for line in file:
                if line.strip():
                    yield json.loads(line)
        if self.config.backend == "postgres":
            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(self.dsn, row_factory=dict_row) as conn:
                yield from conn.execute(
                    "SELECT job_id AS job, attempt, pid, ppid, phase, at FROM chaos_side.executions"
                )


def run_chaos(config: ChaosConfig) -> ChaosResult:
    """Run once; the run directory is removed afterwards unless it failed or ``keep``."""
    result = ChaosRun(config).run()
    if result.ok and not config.keep and config.run_dir is None:
        shutil.rmtree(result.run_dir, ignore_errors=True)
    return result
