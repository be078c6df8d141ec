"""The ``tasktrail`` command end to end: JSON output for scripts, and bad input.

Most commands run in-process through click's runner (fast); the worker and a few error
paths run as real processes of the installed console script.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tasktrail
from tasktrail.cli import cli
from tasktrail.clock import utcnow
from tasktrail.job import Outcome, WorkerInfo
from tasktrail.schedule import Every, ScheduleDef

from . import tasks
from .conftest import APP_SPEC, REPO_ROOT, tasktrail_command
from .helpers import assert_valid_histories, kinds, snapshot, wait_for

#: ``--json`` keys of a job: the ``jobs`` columns, plus the name of its worker.
JOB_KEYS = {
    "id",
    "task",
    "queue",
    "status",
    "ref_type",
    "ref_id",
    "priority",
    "args",
    "kwargs",
    "attempts",
    "max_attempts",
    "timeout",
    "run_at",
    "created_at",
    "started_at",
    "finished_at",
    "worker_id",
    "result",
    "error",
    "unique_key",
    "lock_key",
    "cancel_requested_at",
    "worker_name",
    "parent_id",
    "root_id",
    "waiting_for",
    "after_policy",
    "lock_limit",
    "rate_key",
    "rate_limit",
    "rate_window",
}
#: ``--json`` keys of an event: the ``events`` columns, plus its worker's name, host, pid.
EVENT_KEYS = {"id", "job_id", "at", "kind", "attempt", "worker_id", "detail"} | {
    "worker_name",
    "host",
    "pid",
    "child_pid",
}
WORKER_KEYS = {
    "id",
    "name",
    "host",
    "pid",
    "processes",
    "reserve",
    "queues",
    "status",
    "started_at",
    "heartbeat_at",
    "expires_at",
    "stopped_at",
    "requested_processes",
    "autoscale_min",
    "autoscale_max",
}
STATS_KEYS = {
    "task",
    "queued",
    "reserved",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "run_p50",
    "run_p95",
    "run_p99",
    "wait_p50",
    "wait_p95",
    "wait_p99",
    "failure_rate",
    "throughput_per_active_minute",
}


class Cli:
    """Runs ``tasktrail`` in-process against the test's database."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        # click >= 8.2 always keeps stderr apart; 8.1 needs asking.
        asks = "mix_stderr" in inspect.signature(CliRunner).parameters
        self.runner = CliRunner(**({"mix_stderr": False} if asks else {}))

    def run(self, *args: str) -> Any:
        return self.runner.invoke(
            cli, list(args), env={"TASKTRAIL_DSN": self.dsn, "TASKTRAIL_APP": None}
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
        return str(result.stdout)

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture
def tt(app, worker_dsn: str) -> Cli:
    return Cli(worker_dsn)


def test_enqueue_list_show_stats_and_workers_as_json(app, tt, workers):
    first = tt.json("enqueue", "--app", APP_SPEC, "add", "--args", "[1, 2]", "--ref", "website:42")
    assert set(first) == JOB_KEYS
    assert first["task"] == "add"
    assert (first["status"], first["attempts"], first["args"], first["kwargs"]) == (
        "queued",
        0,
        [1, 2],
        {},
    )
    assert (first["ref_type"], first["ref_id"]) == ("website", "42")
    second = tt.json(
        "enqueue", "--app", APP_SPEC, "add", "--kwargs", '{"a": 3, "b": 4}', "--ref", "website:7"
    )
    # Same id, other type: --ref must match both parts.
    other = tt.json("enqueue", "--app", APP_SPEC, "noop", "--ref", "article:42")
    failing = tt.json("enqueue", "--app", APP_SPEC, "crash", "--args", "[5]")
    # Times are UTC ISO 8601.
    assert first["created_at"].endswith("+00:00")

    listed = tt.json("jobs", "--ref", "website:42")
    assert [job["id"] for job in listed] == [first["id"]]
    assert all(set(job) == JOB_KEYS for job in listed)
    assert [j["id"] for j in tt.json("jobs", "--ref-type", "website")] == [
        second["id"],
        first["id"],
    ]
    assert [j["id"] for j in tt.json("jobs", "--ref", "article:42")] == [other["id"]]
    assert tt.json("jobs", "--ref", "website:43") == []
    assert [j["id"] for j in tt.json("jobs", "--limit", "1")] == [failing["id"]]  # newest first
    assert len(tt.json("jobs", "--limit", "0")) == 4

    worker = workers.start(processes=1, burst=True)
    assert worker.wait() == 0, worker.diagnose()

    assert {j["id"] for j in tt.json("jobs", "--status", "succeeded")} == {
        first["id"],
        second["id"],
        other["id"],
    }
    shown = tt.json("show", str(first["id"]))
    assert set(shown) == {"job", "events"}
    assert set(shown["job"]) == JOB_KEYS
    assert (shown["job"]["status"], shown["job"]["result"]) == ("succeeded", 3)
    assert shown["job"]["worker_name"] == worker.name
    # claimed straight into an idle process: no `reserved` in between
    assert [e["kind"] for e in shown["events"]] == ["enqueued", "started", "succeeded"]
    assert all(set(event) == EVENT_KEYS for event in shown["events"])
    assert shown["events"][-1]["worker_name"] == worker.name
    assert shown["events"][-1]["pid"] == worker.pid
    # the child process that ran it, on its start and its end; none on its enqueue
    child = shown["events"][-1]["child_pid"]
    assert [e["child_pid"] for e in shown["events"]] == [None, child, child]
    assert child not in (None, worker.pid)
    crashed = tt.json("show", str(failing["id"]))
    assert crashed["job"]["status"] == "failed"
    assert crashed["events"][-1]["detail"]["exit_code"] == 5

    text = tt.ok("show", str(first["id"]))
    assert "history" in text and "succeeded" in text and "website:42" in text
    assert "child pid" in text and str(child) in text

    stats = {row["task"]: row for row in tt.json("stats")}
    assert all(set(row) == STATS_KEYS for row in stats.values())
    assert (stats["add"]["succeeded"], stats["add"]["failed"], stats["add"]["queued"]) == (2, 0, 0)
    assert (stats["crash"]["failed"], stats["crash"]["failure_rate"]) == (1, 1.0)
    assert stats["add"]["run_p50"] is not None
    assert stats["crash"]["run_p50"] is not None  # a child that died ended its attempt
    header = tt.ok("stats").splitlines()[1]
    assert "run p50 / p95" in header and "jobs / active min" in header

    registry = tt.json("workers", "--all")
    assert [(w["name"], w["status"], w["processes"]) for w in registry] == [
        (worker.name, "stopped", 1)
    ]
    assert all(set(w) == WORKER_KEYS for w in registry)
    assert tt.json("workers") == []  # only running ones by default

    # People get a table: a header line, then one line per job.
    table = tt.ok("jobs", "--ref-type", "website").splitlines()
    assert table[0].split()[:3] == ["id", "task", "queue"]
    assert len(table) == 3
    assert_valid_histories(app)


def test_maintain_reports_what_it_pruned_of_each_kind(app, tt):
    # A job fired by a schedule, run by a worker that then stopped, all ten days ago.
    backend = app.backend
    long_ago = utcnow() - timedelta(days=10)
    backend.save_schedule(ScheduleDef("report:1", tasks.add.name, Every(3600.0)), now=long_ago)
    worker = backend.register_worker(WorkerInfo("old", "host", 1, 1, 1, (), 30.0), now=long_ago)
    [tick] = backend.fire_due_schedules(
        now=long_ago + timedelta(hours=1),
        worker_id=worker,
        make_job=lambda record, due: tasks.add.prepare(1, 2),
    )
    [job] = backend.reserve(worker, [], 1, now=long_ago + timedelta(hours=1))
    assert job.id == tick.job_id
    [running] = backend.mark_started(worker, [job.id], now=long_ago + timedelta(hours=1))
    done = Outcome(job.id, running.attempts, "succeeded", long_ago + timedelta(hours=1))
    backend.finish(worker, [done], now=long_ago + timedelta(hours=1))
    backend.unregister_worker(worker, now=long_ago + timedelta(hours=2))
    events = len(backend.list_events(job.id))
    keep = ("--keep-succeeded", "1d", "--keep-failed", "2d", "--keep-cancelled", "3d")

    text = tt.ok("maintain", *keep)
    assert (
        f"pruned 0 cancelled, 0 failed, 1 succeeded jobs, {events} events, 1 schedule ledger "
        "rows and 1 stopped or lost workers"
    ) in text
    assert backend.list_ticks("report:1") == []
    assert backend.list_workers(include_stopped=True) == []
    again = tt.json("maintain", *keep)
    assert (again["pruned_schedule_ticks"], again["pruned_workers"]) == (0, 0)
    assert again["pruned_jobs"] == {"cancelled": 0, "failed": 0, "succeeded": 0}


def test_cancel_and_retry(app, tt, workers):
    queued = tasks.add.enqueue(1, 1)
    crashed = tasks.crash.enqueue()
    worker = workers.start(processes=1, queues="default")
    wait_for(lambda: crashed.get().status == "failed", "the crash", diagnose=worker.diagnose)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert queued.get().status == "succeeded"
    later = tasks.add.enqueue(2, 2, delay=3600)  # stays queued: no worker would run it yet

    cancelled = tt.json("cancel", str(later.id), "--reason", "not needed")
    assert [(j["id"], j["status"]) for j in cancelled] == [(later.id, "cancelled")]
    assert set(cancelled[0]) == JOB_KEYS
    event = later.events()[-1]
    assert (event.kind, event.detail["reason"]) == ("cancelled", "not needed")
    assert "@" in event.detail["by"]  # who did it: user@host

    retried = tt.json("retry", str(crashed.id), str(later.id))
    assert [(j["id"], j["status"]) for j in retried] == [
        (crashed.id, "queued"),
        (later.id, "queued"),
    ]
    # A final failure retried by a person gets one more attempt.
    assert (retried[0]["attempts"], retried[0]["max_attempts"]) == (1, 2)
    assert kinds(crashed.events())[-1] == "retried"

    # Only queued jobs can be cancelled, only failed or cancelled ones retried; one bad id
    # among several changes none of them.
    before = snapshot(app)
    for args, message in (
        (("cancel", str(later.id), str(queued.id)), f"job {queued.id} is succeeded"),
        (("retry", str(queued.id)), "only failed or cancelled jobs can be retried"),
        (("cancel", str(later.id), "999999"), "no job with id 999999"),
    ):
        result = tt.run(*args)
        assert result.exit_code == 1
        assert_one_line_error(result.stderr, message)
    assert snapshot(app) == before
    assert_valid_histories(app)


def assert_one_line_error(stderr: str, expected: str) -> None:
    """One line, ``Error: …``; an error importing the user's module adds where in their
    code it happened (traceback lines of their files), and nothing else."""
    lines = stderr.strip().splitlines()
    assert lines[0].startswith("Error: ")
    assert expected in lines[0], lines[0]
    if "cannot import module" in lines[0]:
        assert all(line.startswith(('  File "', "    ")) for line in lines[1:]), stderr
        package = os.path.dirname(tasktrail.__file__) + os.sep  # none of tasktrail's frames
        assert package not in stderr and "importlib" not in stderr, stderr
    else:
        assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"


def _missing_dir_dsn(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'no_such_dir' / 'jobs.db'}"


ENQUEUE = ("enqueue", "--app", APP_SPEC)
BAD_INPUT = [
    pytest.param((*ENQUEUE, "no_such_task"), "unknown task 'no_such_task'", id="unknown-task"),
    pytest.param((*ENQUEUE, "add", "--args", "[1,"), "--args is not valid JSON", id="args-json"),
    pytest.param(
        (*ENQUEUE, "add", "--args", '{"a": 1}'), "--args must be a JSON array", id="args-object"
    ),
    pytest.param(
        (*ENQUEUE, "add", "--args", "[NaN, 1]"), "which JSON cannot represent", id="args-nan"
    ),
    pytest.param(
        (*ENQUEUE, "add", "--args", "[1, 2]", "--kwargs", "[3]"),
        "--kwargs must be a JSON object",
        id="kwargs-array",
    ),
    pytest.param(
        (*ENQUEUE, "add", "--args", "[1]"), "missing a required argument: 'b'", id="args-missing"
    ),
    pytest.param(
        (*ENQUEUE, "add", "--args", "[1, 2]", "--ref", "website"),
        "ref must look like 'type:id'",
        id="enqueue-ref",
    ),
    pytest.param(
        (*ENQUEUE, "add", "--args", "[1, 2]", "--delay", "soon"),
        "cannot read duration 'soon'",
        id="delay",
    ),
    pytest.param(
        (*ENQUEUE, "add", "--args", "[1, 2]", "--queue", "two words"),
        "invalid queue name 'two words'",
        id="queue-name",
    ),
    pytest.param(
        ("enqueue", "add", "--args", "[1, 2]"), "this command needs your tasks", id="no-app"
    ),
    pytest.param(("jobs", "--ref", "website:"), "ref must look like 'type:id'", id="jobs-ref"),
    pytest.param(("jobs", "--limit", "-1"), "--limit must be 0 (all) or more", id="jobs-limit"),
    pytest.param(
        ("workers", "--limit", "-1"), "--limit must be 0 (all) or more", id="workers-limit"
    ),
    pytest.param(("jobs", "--since", "yesterday"), "cannot read time", id="since"),
    pytest.param(("stats", "--window", "0s"), "window must be longer than zero", id="window"),
    pytest.param(("show", "999999"), "no job with id 999999", id="show-missing"),
    pytest.param(("jobs", "--dsn", "mysql://x"), "unsupported DSN scheme 'mysql'", id="dsn-mysql"),
    pytest.param(("jobs", "--dsn", "sqlite://"), "names no file", id="dsn-no-path"),
    pytest.param(
        (*ENQUEUE, "add", "--args", "[1, 2]", "--dsn", "mysql://x"),
        "unsupported DSN scheme 'mysql'",
        id="enqueue-dsn-mysql",
    ),
    pytest.param(
        ("jobs", "--dsn", _missing_dir_dsn), "no tasktrail database at", id="dsn-missing-dir"
    ),
    pytest.param(
        ("enqueue", "--dsn", _missing_dir_dsn, "--app", APP_SPEC, "add", "--args", "[1, 2]"),
        "does not exist",
        id="enqueue-dsn-missing-dir",
    ),
    pytest.param(
        ("migrate", "--dsn", "sqlite:////proc/tasktrail-test.db"),
        "cannot open SQLite database /proc/tasktrail-test.db",
        id="dsn-unwritable",
    ),
    pytest.param(
        ("worker", "--app", APP_SPEC, "--processes", "0"),
        "processes must be an integer from 1 to 512, got 0",
        id="processes-0",
    ),
    pytest.param(
        ("worker", "--app", APP_SPEC, "--queues", "ok,not ok"),
        "invalid queue name 'not ok'",
        id="worker-queue",
    ),
    pytest.param(
        ("worker", "--app", "no_such_module:app"),
        "cannot import module 'no_such_module' for --app: ModuleNotFoundError",
        id="app-missing-module",
    ),
    pytest.param(
        ("worker", "--app", "tests.integration.broken_tasks:app"),
        "RuntimeError: this module fails on import on purpose",
        id="app-import-error",
    ),
    pytest.param(
        ("worker", "--app", "tests.integration.tasks:not_an_app"),
        "not a tasktrail.App",
        id="app-not-an-app",
    ),
    pytest.param(
        ("worker", "--app", "tests.integration.tasks:nothing_here"),
        "has no attribute 'nothing_here'",
        id="app-missing-attribute",
    ),
    pytest.param(
        ("enqueue", "--app", "tests.integration.tasks", "add"),
        "--app must look like module:attribute",
        id="app-no-colon",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_one_clear_line_and_changes_nothing(app, tt, tmp_path, args, message):
    tasks.add.enqueue(1, 2, ref=("website", "42"))
    args = tuple(arg(tmp_path) if callable(arg) else arg for arg in args)
    files = sorted(tmp_path.rglob("*"))
    before = snapshot(app)

    result = tt.run(*args)

    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert_one_line_error(result.stderr, message)
    assert result.stdout == ""
    tasks.app.configure(tt.dsn)  # a failed --dsn must not have moved the app, but be sure
    assert snapshot(app) == before
    assert sorted(tmp_path.rglob("*")) == files  # no database file or directory created
    assert not Path("/proc/tasktrail-test.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("jobs", "--dsn", "mysql://x"), "unsupported DSN scheme 'mysql'"),
        (("worker", "--app", "tests.integration.broken_tasks:app"), "fails on import on purpose"),
        (("worker", "--app", APP_SPEC, "--processes", "0"), "processes must be an integer"),
    ],
)
def test_the_installed_command_reports_errors_in_one_line(app, worker_dsn, args, message):
    before = snapshot(app)
    env = {**os.environ, "TASKTRAIL_DSN": worker_dsn}
    env.pop("TASKTRAIL_APP", None)
    done = subprocess.run(
        [tasktrail_command(), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert_one_line_error(done.stderr, message)
    assert snapshot(app) == before


def test_shell_completion_is_generated_and_completes_commands() -> None:
    command = tasktrail_command()
    script = subprocess.run(
        [command], env={**os.environ, "_TASKTRAIL_COMPLETE": "bash_source"},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert "_tasktrail_completion" in script.stdout and "complete -o" in script.stdout
    words = subprocess.run(
        [command],
        env={**os.environ, "_TASKTRAIL_COMPLETE": "bash_complete",
             "COMP_WORDS": "tasktrail wor", "COMP_CWORD": "1"},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert "plain,worker" in words.stdout.splitlines() and "plain,workers" in words.stdout
