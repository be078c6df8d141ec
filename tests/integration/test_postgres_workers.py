"""Real ``tasktrail worker`` processes on PostgreSQL: many at once, killed, woken.

Each test starts worker subprocesses (``--app tests.integration.pg_tasks:app``, DSN in
``TASKTRAIL_DSN``) in their own sessions, and kills whatever is left of them afterwards.
What happened is read back with SQL: the jobs and events tables, and the ``runs`` table
the tasks write to through their own connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from tasktrail.lifecycle import check_history

try:  # the postgres extra may not be installed: skip (fail under CI) like pg_server does
    import psycopg
    from psycopg import sql

    from . import pg_tasks
except ImportError as exc:
    if os.environ.get("CI"):
        raise
    pytest.skip(f"the postgres extra is not installed ({exc})", allow_module_level=True)

pytestmark = pytest.mark.postgres

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = "tests.integration.pg_tasks:app"
DEADLINE = 30.0  # generous: a passing run never waits this long


def wait_until(
    condition: Callable[[], T | None],
    what: str,
    *,
    timeout: float = DEADLINE,
    diagnose: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it is truthy and return it; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{diagnose()}" if diagnose else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(0.05)


def tasktrail_command() -> str:
    beside = Path(sys.executable).parent / "tasktrail"
    if beside.exists():
        return str(beside)
    found = shutil.which("tasktrail")
    if found is None:
        pytest.fail("the tasktrail command is not installed (pip install -e .)")
    return found


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            text = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return text[text.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def child_pids(pid: int) -> list[int]:
    """Living children of ``pid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as file:
                text = file.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(name))
    return sorted(found)


@dataclass
class Worker:
    """A ``tasktrail worker`` subprocess in its own session."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def diagnose(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        try:
            log = self.log_path.read_text(errors="replace")[-3000:]
        except FileNotFoundError:
            log = ""
        return f"worker {self.name} ({state}) log:\n{log}"

    def stop(self) -> int:
        """SIGTERM, then wait for a clean exit; return the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.diagnose()}\ndid not stop on SIGTERM") from None

    def kill_everything(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def base_env(pg_dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    env["TASKTRAIL_DSN"] = pg_dsn
    return env


@pytest.fixture
def start_worker(pg_dsn: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Starts ``tasktrail worker`` with options (``lease=2`` -> ``--lease 2``)."""
    started: list[Worker] = []

    def start(name: str, **options: Any) -> Worker:
        argv = [tasktrail_command(), "worker", "--app", APP_SPEC, "--name", name]
        for key, value in {"kill_grace": 0.5, **options}.items():
            flag = "--" + key.replace("_", "-")
            argv += [flag] if value is True else [flag, str(value)]
        log_path = tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=base_env(pg_dsn),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(name, proc, log_path)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill_everything()


@pytest.fixture
def db(pg_server: str, pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """The test's schema, set up, with the ``runs`` table; an autocommit connection."""
    pg_tasks.app.configure(pg_dsn)
    try:
        pg_tasks.app.backend  # noqa: B018 - creates the schema now
        with psycopg.connect(pg_server, autocommit=True) as conn:
            pg_tasks.create_runs_table(conn)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg_tasks.schema())))
            yield conn
    finally:
        pg_tasks.app.close()


def scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    return row[0] if row else None


def worker_id(conn: psycopg.Connection[Any], name: str) -> int | None:
    return scalar(conn, "SELECT max(id) FROM workers WHERE name = %s", name)  # type: ignore[no-any-return]


def wait_registered(conn: psycopg.Connection[Any], *workers: Worker) -> list[int]:
    def registered() -> list[int] | None:
        ids = [
            scalar(conn, "SELECT id FROM workers WHERE name = %s AND status = 'running'", w.name)
            for w in workers
        ]
        return ids if all(ids) else None

    return wait_until(
        registered,
        "workers to register",
        diagnose=lambda: "\n".join(w.diagnose() for w in workers),
    )


def history_problems(conn: psycopg.Connection[Any]) -> dict[int, list[str]]:
    """``check_history`` of every job, from the events table; only jobs with problems."""
    events: dict[int, list[Any]] = defaultdict(list)
    for job_id, kind, attempt in conn.execute(
        "SELECT job_id, kind, attempt FROM events ORDER BY job_id, id"
    ):
        events[job_id].append(SimpleNamespace(kind=kind, attempt=attempt))
    problems = {}
    for job_id, status in conn.execute("SELECT id, status FROM jobs"):
        found = check_history(events.get(job_id, []), status)
        if found:
            problems[job_id] = found
    return problems


def status_summary(conn: psycopg.Connection[Any]) -> str:
    rows = conn.execute("SELECT task, status, count(*) FROM jobs GROUP BY 1, 2 ORDER BY 1, 2")
    return f"\njobs by task and status: {[tuple(row) for row in rows]}"


def cli_json(pg_dsn: str, *args: str) -> Any:
    result = subprocess.run(
        [tasktrail_command(), *args, "--json"],
        cwd=REPO_ROOT,
        env=base_env(pg_dsn),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- many jobs, two worker clients ------------------------------------------------------------

JOBS = 5000


def test_two_workers_with_two_processes_run_5000_jobs_each_exactly_once(
    db: psycopg.Connection[Any], start_worker: Callable[..., Worker]
) -> None:
    workers = [
        start_worker(name, processes=2, reserve=16, poll_interval=0.5) for name in ("w1", "w2")
    ]
    ids = wait_registered(db, *workers)

    pg_tasks.app.enqueue_many(pg_tasks.record.prepare() for _ in range(JOBS))

    wait_until(
        lambda: scalar(db, "SELECT count(*) FROM jobs WHERE status = 'succeeded'") == JOBS,
        f"{JOBS} jobs to succeed",
        timeout=90,
        diagnose=lambda: "\n".join(w.diagnose() for w in workers) + status_summary(db),
    )
    for worker in workers:
        assert worker.stop() == 0, worker.diagnose()

    runs, distinct_jobs, max_attempt, pids = db.execute(
        "SELECT count(*), count(DISTINCT job_id), max(attempt), count(DISTINCT pid) FROM runs"
    ).fetchone()  # type: ignore[misc]
    assert (runs, distinct_jobs, max_attempt) == (JOBS, JOBS, 1)
    assert 2 <= pids <= 4  # the four children, nothing else
    assert db.execute("SELECT status, attempts, count(*) FROM jobs GROUP BY 1, 2").fetchall() == [
        ("succeeded", 1, JOBS)
    ]
    assert history_problems(db) == {}
    started_by = dict(
        db.execute("SELECT worker_id, count(*) FROM events WHERE kind = 'started' GROUP BY 1")
    )
    assert set(started_by) == set(ids), "both worker clients should have run jobs"
    assert sum(started_by.values()) == JOBS
    assert db.execute("SELECT DISTINCT status FROM workers").fetchall() == [("stopped",)]


# -- a worker killed mid-batch ------------------------------------------------------------------


def test_a_killed_supervisor_loses_its_children_and_its_jobs_are_rerun_by_another(
    db: psycopg.Connection[Any],
    start_worker: Callable[..., Worker],
    pg_dsn: str,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    victim = start_worker("victim", processes=2, reserve=4, lease=2, poll_interval=0.1)
    (victim_id,) = wait_registered(db, victim)
    handles = pg_tasks.app.enqueue_many(pg_tasks.hold.prepare(str(gate)) for _ in range(8))

    def held() -> dict[int, str] | None:
        """The victim's jobs and their status, once both children run one (it holds no
        more: it buffers nothing its processes do not run)."""
        jobs = dict(
            db.execute(
                "SELECT id, status FROM jobs WHERE worker_id = %s"
                " AND status IN ('reserved', 'running')",
                (victim_id,),
            ).fetchall()
        )
        ran = scalar(db, "SELECT count(*) FROM runs")
        return jobs if len(jobs) == 2 and ran == 2 else None

    at_kill = wait_until(
        held,
        "the victim to run 2 jobs",
        diagnose=lambda: victim.diagnose() + status_summary(db),
    )
    running_ids = {job_id for job_id, status in at_kill.items() if status == "running"}
    assert len(running_ids) == 2
    executing = {row[0] for row in db.execute("SELECT job_id FROM runs")}
    assert len(executing) == 2 and executing <= running_ids
    children = child_pids(victim.proc.pid)
    assert len(children) == 2
    assert {row[0] for row in db.execute("SELECT pid FROM runs")} == set(children)

    victim.proc.send_signal(signal.SIGKILL)  # the supervisor only, not its group
    victim.proc.wait(DEADLINE)
    wait_until(
        lambda: not any(process_alive(pid) for pid in children),
        "the victim's children to die with it",
        timeout=10,
    )

    gate.touch()
    rescuer = start_worker("rescuer", processes=2, lease=5, poll_interval=0.1)
    wait_until(
        lambda: scalar(db, "SELECT count(*) FROM jobs WHERE status = 'succeeded'") == 8,
        "every job to succeed",
        diagnose=rescuer.diagnose,
    )
    rescuer_id = worker_id(db, "rescuer")

    def events_of(job_id: int) -> list[tuple[str, int, int | None, Any]]:
        return db.execute(
            "SELECT kind, attempt, worker_id, detail FROM events WHERE job_id = %s ORDER BY id",
            (job_id,),
        ).fetchall()

    for job_id in running_ids:
        kinds = [(kind, attempt, wid) for kind, attempt, wid, _ in events_of(job_id)]
        # (the rescuer may claim a job straight into a process: then no `reserved`)
        kinds = [k for k in kinds if k != ("reserved", 1, rescuer_id)]
        assert kinds[-5:] == [
            ("started", 1, victim_id),
            ("lost", 1, victim_id),
            ("retry_scheduled", 1, None),
            ("started", 2, rescuer_id),
            ("succeeded", 2, rescuer_id),
        ], kinds
    attempts = dict(db.execute("SELECT id, attempts FROM jobs").fetchall())
    assert attempts == {h.id: 2 if h.id in running_ids else 1 for h in handles}
    assert history_problems(db) == {}
    # Every job ran to the end once; the only other runs are the two killed attempts.
    assert {row[0] for row in db.execute("SELECT job_id FROM runs WHERE attempt = 2")} == (
        running_ids
    )
    assert scalar(db, "SELECT count(*) FROM runs") == 8 + 2
    assert scalar(db, "SELECT count(*) FROM (SELECT DISTINCT job_id, attempt FROM runs) AS r") == 10

    by_name = {w["name"]: w for w in cli_json(pg_dsn, "workers", "--all")}
    assert by_name["victim"]["status"] == "lost"
    assert by_name["rescuer"]["status"] == "running"
    assert rescuer.stop() == 0


# -- maintenance with no worker running ---------------------------------------------------------


def test_maintain_recovers_a_dead_workers_jobs_and_prunes_when_no_worker_runs(
    db: psycopg.Connection[Any],
    start_worker: Callable[..., Worker],
    pg_dsn: str,
    tmp_path: Path,
) -> None:
    doomed = start_worker("doomed", processes=1, reserve=2, lease=1, poll_interval=0.1)
    (doomed_id,) = wait_registered(db, doomed)
    done = pg_tasks.app.enqueue_many(pg_tasks.noop.prepare() for _ in range(3))
    wait_until(
        lambda: scalar(db, "SELECT count(*) FROM jobs WHERE status = 'succeeded'") == 3,
        "the quick jobs to succeed",
        diagnose=doomed.diagnose,
    )
    stuck = pg_tasks.app.enqueue_many(
        pg_tasks.hold.prepare(str(tmp_path / "never")) for _ in range(2)
    )

    def holding() -> list[str] | None:
        statuses = sorted(
            row[0]
            for row in db.execute(
                "SELECT status FROM jobs WHERE id = ANY (%s) AND worker_id = %s",
                ([h.id for h in stuck], doomed_id),
            )
        )
        ran = scalar(db, "SELECT count(*) FROM runs")
        return statuses if len(statuses) == 2 and ran == 1 else None

    at_kill = wait_until(
        holding,
        "the worker to run one held job and hold the other",
        diagnose=lambda: doomed.diagnose() + status_summary(db),
    )
    doomed.kill_everything()
    wait_until(
        lambda: scalar(db, "SELECT expires_at < now() FROM workers WHERE id = %s", doomed_id),
        "the dead worker's lease to expire",
    )
    pruned_events = scalar(
        db, "SELECT count(*) FROM events WHERE job_id = ANY (%s)", [h.id for h in done]
    )

    report = cli_json(
        pg_dsn,
        "maintain",
        "--keep-succeeded",
        "0s",
        "--keep-failed",
        "never",
        "--keep-cancelled",
        "30d",
    )

    assert report["lost_workers"] == [doomed_id]
    assert sorted(
        (r["job_id"], r["worker_id"], r["was"], r["now"]) for r in report["recovered"]
    ) == sorted(
        (job_id, doomed_id, status, "queued")
        for job_id, status in db.execute(
            "SELECT job_id, detail->>'was' FROM events WHERE kind = 'lost'"
        )
    )
    assert sorted(r["was"] for r in report["recovered"]) == at_kill
    assert report["pruned_jobs"] == {"cancelled": 0, "succeeded": 3}
    # failed jobs kept forever: so are stopped workers (their history names them)
    assert (report["pruned_schedule_ticks"], report["pruned_workers"]) == (0, 0)
    # enqueued, (reserved,) started, succeeded for each of the 3 quick jobs
    assert report["pruned_events"] == pruned_events
    assert 3 * 3 <= pruned_events <= 3 * 4
    assert db.execute("SELECT id, status FROM jobs ORDER BY id").fetchall() == [
        (h.id, "queued") for h in stuck
    ]
    assert (
        scalar(db, "SELECT count(*) FROM events WHERE job_id = ANY (%s)", [h.id for h in done]) == 0
    )
    assert history_problems(db) == {}
    workers = cli_json(pg_dsn, "workers", "--all")
    assert [(w["name"], w["status"]) for w in workers] == [("doomed", "lost")]

    again = cli_json(pg_dsn, "maintain", "--keep-succeeded", "0s")
    assert again["recovered"] == [] and again["lost_workers"] == []
    assert again["pruned_jobs"] == {"cancelled": 0, "failed": 0, "succeeded": 0}


# -- waking on NOTIFY -----------------------------------------------------------------------------


def test_an_idle_worker_starts_a_new_job_on_notify_long_before_its_next_poll(
    db: psycopg.Connection[Any], start_worker: Callable[..., Worker]
) -> None:
    poll_interval = 60.0
    sleepy = start_worker("sleepy", processes=1, poll_interval=poll_interval, lease=600)
    wait_registered(db, sleepy)
    wait_until(
        lambda: scalar(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE query = %s",
            f'LISTEN "{pg_tasks.schema()}"',
        ),
        "the worker to LISTEN",
        diagnose=sleepy.diagnose,
    )
    # A first job, so the worker has certainly been through its start-up poll and is
    # idle, with its next poll a minute away.
    first = pg_tasks.record.enqueue()
    wait_until(lambda: first.get().status == "succeeded", "the first job", diagnose=sleepy.diagnose)

    second = pg_tasks.record.enqueue()
    wait_until(
        lambda: second.get().status == "succeeded",
        "a job enqueued while the worker idles to run (woken by NOTIFY, not by a poll)",
        timeout=10,  # far below the poll interval
        diagnose=sleepy.diagnose,
    )
    assert sleepy.stop() == 0


def test_a_result_holding_a_nul_character_is_stored_exactly(
    db: psycopg.Connection[Any], start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker("carry-on", processes=1, poll_interval=0.1)
    nul = pg_tasks.nul_result.enqueue()
    good = pg_tasks.record.enqueue()
    wait_until(
        lambda: nul.get().is_final and good.get().is_final,
        "both jobs to finish",
        diagnose=worker.diagnose,
    )
    stored = nul.get()
    assert (stored.status, stored.result) == ("succeeded", "a\x00b"), stored
    assert good.get().status == "succeeded"
    assert worker.proc.poll() is None, worker.diagnose()
    assert worker.stop() == 0
