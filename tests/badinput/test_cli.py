"""The ``tasktrail`` command fed bad options and arguments, command by command.

Each case must end with one line on stderr (``Error: …`` naming the problem), nothing on
stdout, exit status 1 (a refused value) or 2 (a usage error click detects: an option
that is not a number, a choice that is not offered), and the database exactly as before.
The commands run in-process (click's runner), on SQLite and on PostgreSQL; a few run as
the installed console script, to see the real streams and exit status.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import tasktrail
from tasktrail.cli import cli

from ..integration.conftest import REPO_ROOT, tasktrail_command
from .conftest import nothing_changes
from .helpers import CLEAN_ENV, INJECTION, assert_one_line_error

APP = ("--app", "tests.badinput.tasks:app")


def run(dsn: str, *args: str, env: dict[str, str] | None = None) -> Result:
    """``tasktrail ARGS --dsn DSN`` (options after the command name, as click wants)."""
    command = list(args)
    # The common options belong to the last command word: "schedules add --dsn …".
    words = 2 if command[0] == "schedules" else 1
    argv = [*command[:words], "--dsn", dsn, *command[words:]]
    return CliRunner().invoke(cli, argv, env={**CLEAN_ENV, **(env or {})}, catch_exceptions=False)


BURST = ("--burst",)  # if a worker case were not refused, it would drain the queue and stop

# fmt: off
CASES: list[Any] = [
    # jobs
    pytest.param(("jobs", "--limit", "-1"), 1, "--limit must be 0 (all) or more", id="jobs-limit-negative"),
    pytest.param(("jobs", "--limit", "x"), 2, "'x' is not a valid integer", id="jobs-limit-text"),
    pytest.param(("jobs", "--ref", "website"), 1, "ref must look like 'type:id'", id="jobs-ref"),
    pytest.param(("jobs", "--ref", INJECTION), 1, "ref must look like 'type:id'", id="jobs-ref-injection"),
    pytest.param(("jobs", "--status", "bogus"), 2, "'bogus' is not one of", id="jobs-status"),
    pytest.param(("jobs", "--status", "queued'); DROP TABLE jobs; --"), 2, "is not one of", id="jobs-status-injection"),
    pytest.param(("jobs", "--since", "yesterday"), 1, "cannot read time 'yesterday'", id="jobs-since"),
    pytest.param(("jobs", "--until", "-5m"), 1, "cannot read time '-5m'", id="jobs-until"),
    pytest.param(("jobs", "--since", "99999999999999d"), 1, "cannot read time", id="jobs-since-huge"),
    pytest.param(("jobs", "--since", "2026-13-01"), 1, "cannot read time", id="jobs-since-month"),
    pytest.param(("jobs", "--worker", "x"), 2, "'x' is not a valid integer", id="jobs-worker"),
    pytest.param(("jobs", "--task", "a\x00b"), 1, "task must be UTF-8 text without NUL", id="jobs-task-nul"),
    pytest.param(("jobs", "--queue", "a\x00b"), 1, "queue must be UTF-8 text without NUL", id="jobs-queue-nul"),
    pytest.param(("jobs", "--ref-type", "a\x00b"), 1, "ref_type must be UTF-8 text without NUL", id="jobs-ref-type-nul"),
    pytest.param(("jobs", "--ref", "website:\udcff"), 1, "lone surrogate", id="jobs-ref-undecodable"),  # argv byte 0xff
    pytest.param(("enqueue", *APP, "echo", "--ref", "website:\udcff"), 1, "lone surrogate", id="enqueue-ref-undecodable"),
    pytest.param(("cancel", "1", "--reason", "\udcff"), 1, "reason must be UTF-8 text", id="cancel-reason-undecodable"),
    pytest.param(("jobs", "--bogus"), 2, "No such option", id="jobs-unknown-option"),
    # show
    pytest.param(("show", "x"), 2, "'x' is not a valid integer", id="show-text"),
    pytest.param(("show",), 2, "Missing argument 'JOB_ID'", id="show-missing-argument"),
    pytest.param(("show", str(2**70)), 1, f"no job with id {2**70}", id="show-huge"),
    pytest.param(("show", "0"), 1, "no job with id 0", id="show-zero"),
    pytest.param(("show", "999999"), 1, "no job with id 999999", id="show-missing"),
    # stats, workers
    pytest.param(("stats", "--window", "0"), 1, "window must be longer than zero", id="stats-zero"),
    pytest.param(("stats", "--window", "-1h"), 1, "cannot read duration '-1h'", id="stats-negative"),
    pytest.param(("stats", "--window", "x"), 1, "cannot read duration 'x'", id="stats-text"),
    pytest.param(("stats", "--window", "9999999999999w"), 1, "is too long", id="stats-huge"),
    pytest.param(("workers", "--limit", "-1"), 1, "--limit must be 0 (all) or more", id="workers-limit"),
    pytest.param(("workers", "--limit", "many"), 2, "is not a valid integer", id="workers-limit-text"),
    # enqueue
    pytest.param(("enqueue", *APP, "nope"), 1, "unknown task 'nope'", id="enqueue-unknown"),
    pytest.param(("enqueue", *APP, "os.system", "--args", '["touch /tmp/x"]'), 1, "unknown task 'os.system'", id="enqueue-os-system"),
    pytest.param(("enqueue", *APP, INJECTION), 1, "unknown task", id="enqueue-injection"),
    pytest.param(("enqueue", "echo"), 1, "this command needs your tasks", id="enqueue-no-app"),
    pytest.param(("enqueue", "--app", "tests.badinput.tasks", "echo"), 1, "--app must look like module:attribute", id="enqueue-app-form"),
    pytest.param(("enqueue", "--app", "tests.badinput.tasks:nothing", "echo"), 1, "has no attribute 'nothing'", id="enqueue-app-attribute"),
    pytest.param(("enqueue", "--app", "tests.badinput.tasks:echo", "echo"), 1, "not a tasktrail.App", id="enqueue-app-not-app"),
    pytest.param(("enqueue", *APP, "echo", "--args", "{"), 1, "--args is not valid JSON", id="enqueue-args-json"),
    pytest.param(("enqueue", *APP, "echo", "--args", "{}"), 1, "--args must be a JSON array", id="enqueue-args-object"),
    pytest.param(("enqueue", *APP, "echo", "--kwargs", "[]"), 1, "--kwargs must be a JSON object", id="enqueue-kwargs-array"),
    pytest.param(("enqueue", *APP, "echo", "--args", "[NaN]"), 1, "JSON cannot represent", id="enqueue-nan"),
    pytest.param(("enqueue", *APP, "echo", "--args", "[-Infinity]"), 1, "JSON cannot represent", id="enqueue-infinity"),
    pytest.param(("enqueue", *APP, "echo", "--args", "[1e999]"), 1, "JSON cannot represent", id="enqueue-overflow"),
    pytest.param(("enqueue", *APP, "echo", "--args", "[" * 150 + "]" * 150), 1, "nested more than 100 levels", id="enqueue-deep"),
    pytest.param(("enqueue", *APP, "echo", "--args", "[" * 100_000 + "]" * 100_000), 1, "--args is nested too deeply", id="enqueue-very-deep"),
    pytest.param(("enqueue", *APP, "echo", "--args", '["' + "x" * 1_000_001 + '"]'), 1, "over the 1,000,000-byte limit", id="enqueue-megabyte"),
    pytest.param(("enqueue", *APP, "echo", "--args", '["\\ud800"]'), 1, "lone surrogate", id="enqueue-surrogate"),
    pytest.param(("enqueue", *APP, "add", "--args", "[1]"), 1, "missing a required argument: 'b'", id="enqueue-signature"),
    pytest.param(("enqueue", *APP, "add", "--args", "[1, 2]", "--kwargs", '{"c": 3}'), 1, "cannot enqueue add", id="enqueue-keyword"),
    pytest.param(("enqueue", *APP, "echo", "--ref", "website"), 1, "ref must look like 'type:id'", id="enqueue-ref"),
    pytest.param(("enqueue", *APP, "echo", "--ref", "website:" + "9" * 201), 1, "longer than 200 characters", id="enqueue-ref-long"),
    pytest.param(("enqueue", *APP, "echo", "--queue", "$$"), 1, "invalid queue name '$$'", id="enqueue-queue"),
    pytest.param(("enqueue", *APP, "echo", "--queue", INJECTION), 1, "invalid queue name", id="enqueue-queue-injection"),
    pytest.param(("enqueue", *APP, "echo", "--priority", "99999"), 1, "priority must be an integer from -32768 to 32767", id="enqueue-priority"),
    pytest.param(("enqueue", *APP, "echo", "--priority", "high"), 2, "is not a valid integer", id="enqueue-priority-text"),
    pytest.param(("enqueue", *APP, "echo", "--delay", "-5"), 1, "cannot read duration '-5'", id="enqueue-delay-negative"),
    pytest.param(("enqueue", *APP, "echo", "--delay", "soon"), 1, "cannot read duration 'soon'", id="enqueue-delay-text"),
    pytest.param(("enqueue", *APP, "echo", "--delay", "9999999999999999w"), 1, "too long", id="enqueue-delay-huge"),
    pytest.param(("enqueue", *APP, "unique_by_ref"), 1, "needs the job's ref", id="enqueue-unique-without-ref"),
    # retry, cancel
    pytest.param(("retry",), 1, "give job ids, or filters", id="retry-nothing"),
    pytest.param(("retry", "999999"), 1, "no job with id 999999", id="retry-missing"),
    pytest.param(("retry", "x"), 2, "is not a valid integer", id="retry-text"),
    pytest.param(("retry", "1", "--status", "failed"), 1, "not both", id="retry-ids-and-filters"),
    pytest.param(("retry", "--status", "queued"), 2, "'queued' is not one of", id="retry-status"),
    pytest.param(("retry", "--since", "x"), 1, "cannot read time 'x'", id="retry-since"),
    pytest.param(("retry", "--status", "failed", "--limit", "-1"), 1, "--limit must be 0 (all) or more", id="retry-limit"),
    pytest.param(("retry", "--ref", "website"), 1, "ref must look like 'type:id'", id="retry-ref"),
    pytest.param(("retry", "--task", "a\x00b"), 1, "task must be UTF-8 text without NUL", id="retry-task-nul"),
    pytest.param(("cancel",), 2, "Missing argument 'JOB_IDS...'", id="cancel-nothing"),
    pytest.param(("cancel", "999999"), 1, "no job with id 999999", id="cancel-missing"),
    pytest.param(("cancel", "1", "999999"), 1, "no job with id 999999", id="cancel-one-missing"),
    pytest.param(("cancel", "x"), 2, "is not a valid integer", id="cancel-text"),
    pytest.param(("cancel", "2"), 1, "job 2 is cancelled", id="cancel-cancelled"),
    pytest.param(("cancel", "1", "2"), 1, "job 2 is cancelled", id="cancel-one-cancelled"),
    # schedules
    pytest.param(("schedules", "add", *APP, "s", "echo"), 1, "exactly one of cron= or every=", id="schedule-neither"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "5m", "--cron", "* * * * *"), 1, "exactly one of", id="schedule-both"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--cron", "* * *"), 1, "bad cron expression '* * *'", id="schedule-cron-fields"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--cron", "61 * * * *"), 1, "bad cron expression", id="schedule-cron-range"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--cron", "0 0 30 2 *"), 1, "never comes due", id="schedule-cron-never"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--cron", INJECTION), 1, "bad cron expression", id="schedule-cron-injection"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "0"), 1, "every must be at least 1 second", id="schedule-every-zero"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "500ms"), 1, "every must be at least 1 second", id="schedule-every-short"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "-5m"), 1, "cannot read duration '-5m'", id="schedule-every-negative"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "99999999999999w"), 1, "too long", id="schedule-every-huge"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "999999w"), 1, "every must be at most 36,525 days", id="schedule-every-long"),
    pytest.param(("schedules", "add", *APP, INJECTION, "echo", "--every", "5m"), 1, "invalid schedule name", id="schedule-name"),
    pytest.param(("schedules", "add", *APP, "$$", "echo", "--every", "5m"), 1, "invalid schedule name", id="schedule-name-dollars"),
    pytest.param(("schedules", "add", *APP, "s", "nope", "--every", "5m"), 1, "unknown task 'nope'", id="schedule-task"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "5m", "--args", "{}"), 1, "--args must be a JSON array", id="schedule-args"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "5m", "--kwargs", "[1]"), 1, "--kwargs must be a JSON object", id="schedule-kwargs"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "5m", "--ref", "x"), 1, "ref must look like", id="schedule-ref"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "5m", "--queue", "a b"), 1, "invalid queue name", id="schedule-queue"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "5m", "--priority", "x"), 2, "is not a valid integer", id="schedule-priority"),
    pytest.param(("schedules", "add", *APP, "s", "echo", "--every", "5m", "--catch-up", "bogus"), 2, "is not one of", id="schedule-catch-up"),
    pytest.param(("schedules", "add", *APP, "seed", "echo", "--every", "5m"), 1, "already exists", id="schedule-exists"),
    pytest.param(("schedules", "add", "s", "echo", "--every", "5m"), 1, "this command needs your tasks", id="schedule-no-app"),
    pytest.param(("schedules", "pause", "nope"), 1, "no schedule named 'nope'", id="schedules-pause"),
    pytest.param(("schedules", "pause", "seed", "nope"), 1, "no schedule named 'nope'", id="schedules-pause-one-unknown"),
    pytest.param(("schedules", "resume", INJECTION), 1, "no schedule named", id="schedules-resume"),
    pytest.param(("schedules", "remove", "seed", "x\x00y"), 1, "no schedule named", id="schedules-remove-nul"),
    pytest.param(("schedules", "remove"), 2, "Missing argument 'NAMES...'", id="schedules-remove-nothing"),
    pytest.param(("schedules", "ticks", "seed", "--limit", "-1"), 1, "--limit must be 0 (all) or more", id="schedules-ticks-limit"),
    pytest.param(("schedules", "bogus"), 2, "No such command 'bogus'", id="schedules-unknown"),
    # worker
    pytest.param(("worker",), 1, "this command needs your tasks", id="worker-no-app"),
    *[
        pytest.param(("worker", *APP, *BURST, option, value), status, message, id=f"worker{option}={value}")
        for option, value, status, message in [
            ("--processes", "0", 1, "processes must be an integer from 1 to 512, got 0"),
            ("--processes", "-1", 1, "processes must be an integer from 1 to 512"),
            ("--processes", "513", 1, "processes must be an integer from 1 to 512"),
            ("--processes", "two", 2, "is not a valid integer"),
            ("--reserve", "0", 1, "reserve must be an integer from 1"),
            ("--reserve", "-4", 1, "reserve must be an integer from 1"),
            ("--reserve", "100001", 1, "reserve must be an integer from 1 to 100,000"),
            ("--lease", "0", 1, "lease_seconds must be more than 0.5 seconds"),
            ("--lease", "-30", 1, "lease_seconds must be more than 0.5 seconds"),
            ("--lease", "nan", 1, "lease_seconds must be more than 0.5 seconds"),
            ("--lease", "soon", 2, "is not a valid float"),
            ("--poll-interval", "0", 1, "poll_interval must be more than 0 seconds"),
            ("--poll-interval", "-1", 1, "poll_interval must be more than 0 seconds"),
            ("--grace", "-1", 1, "grace must be 0 or more seconds"),
            ("--kill-grace", "0", 1, "kill_grace must be more than 0 seconds"),
            ("--max-tasks-per-child", "0", 1, "max_tasks_per_child must be an integer from 1"),
            ("--queues", "$$", 1, "invalid queue name '$$'"),
            ("--queues", f"default,{INJECTION}", 1, "invalid queue name"),
        ]
    ],
    # maintain
    pytest.param(("maintain", "--keep-succeeded", "x"), 1, "--keep-succeeded: cannot read duration 'x'", id="maintain-succeeded"),
    pytest.param(("maintain", "--keep-failed", "-1d"), 1, "--keep-failed: cannot read duration", id="maintain-failed"),
    pytest.param(("maintain", "--keep-cancelled", "99999999999999w"), 1, "too long", id="maintain-cancelled"),
    # the DSN and schema options
    pytest.param(("jobs", "--dsn", "mysql://x"), 1, "unsupported DSN scheme 'mysql'", id="dsn-mysql"),
    pytest.param(("jobs", "--dsn", "sqlite://"), 1, "names no file", id="dsn-no-file"),
    pytest.param(("jobs", "--dsn", "jobs.db"), 1, "cannot read DSN", id="dsn-no-scheme"),
    pytest.param(("jobs", "--dsn", "postgresql://h:port/db"), 1, "bad port", id="dsn-port"),
    pytest.param(("jobs", "--dsn", "sqlite:///x.db?synchronous=maybe"), 1, "synchronous", id="dsn-option"),
    pytest.param(("jobs", "--dsn", "postgresql://h/db", "--schema", INJECTION), 1, "invalid schema name", id="schema-injection"),
    pytest.param(("jobs", "--dsn", "postgresql://h/db", "--schema", '"; DROP SCHEMA public; --'), 1, "invalid schema name", id="schema-quote"),
    pytest.param(("jobs", "--dsn", "postgresql://h/db?schema=Jobs"), 1, "invalid schema name 'Jobs'", id="schema-upper"),
    pytest.param(("jobs", "--dsn", "postgresql://h/db?schema=pg_temp"), 1, "reserved for PostgreSQL", id="schema-pg"),
    pytest.param(("enqueue", *APP, "echo", "--dsn", "mysql://x"), 1, "unsupported DSN scheme", id="enqueue-dsn"),
]
# fmt: on


@pytest.mark.parametrize(("args", "status", "message"), CASES)
def test_bad_input_is_one_clear_line_and_changes_nothing(
    app: tasktrail.App, module_dsn: str, args: tuple[str, ...], status: int, message: str
) -> None:
    with nothing_changes(module_dsn):
        result = run(module_dsn, *args)
        assert_one_line_error(result, status, message)
    assert app.dsn == module_dsn  # a refused --dsn did not move the app


@pytest.mark.parametrize(("option", "value"), [("--lease", "inf"), ("--name", "w\udcff")])
def test_worker_options_checked_only_by_the_database(
    app: tasktrail.App, module_dsn: str, option: str, value: str
) -> None:
    # A real process: if the option were accepted, the worker would run here, on an
    # empty queue, and stop.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    with nothing_changes(module_dsn):
        done = subprocess.run(
            [tasktrail_command(), "worker", "--dsn", module_dsn, *APP, *BURST, "--queues",
             "nothing_here", option, value],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert option.strip("-") in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "args", "status", "message"),
    [
        ("TASKTRAIL_DSN", "mysql://x", ("jobs",), 1, "unsupported DSN scheme"),
        ("TASKTRAIL_SCHEMA", INJECTION, ("jobs", "--dsn", "postgresql://h/db"), 1, "invalid schema name"),
        ("TASKTRAIL_APP", "nomodule:app", ("enqueue", "echo"), 1, "cannot import module 'nomodule'"),
        ("TASKTRAIL_APP", "tests.badinput.tasks", ("enqueue", "echo"), 1, "--app must look like"),
        ("TASKTRAIL_PROCESSES", "0", ("worker", *APP, *BURST), 1, "processes must be an integer"),
        ("TASKTRAIL_PROCESSES", "many", ("worker", *APP, *BURST), 2, "is not a valid integer"),
        ("TASKTRAIL_RESERVE", "-1", ("worker", *APP, *BURST), 1, "reserve must be an integer"),
        ("TASKTRAIL_LEASE", "-1", ("worker", *APP, *BURST), 1, "lease_seconds must be more"),
        ("TASKTRAIL_POLL_INTERVAL", "0", ("worker", *APP, *BURST), 1, "poll_interval must be more"),
        ("TASKTRAIL_GRACE", "-5", ("worker", *APP, *BURST), 1, "grace must be 0 or more"),
        ("TASKTRAIL_KILL_GRACE", "0", ("worker", *APP, *BURST), 1, "kill_grace must be more"),
        ("TASKTRAIL_MAX_TASKS_PER_CHILD", "0", ("worker", *APP, *BURST), 1, "max_tasks_per_child"),
        ("TASKTRAIL_QUEUES", "a b", ("worker", *APP, *BURST), 1, "invalid queue name 'a b'"),
    ],
    ids=lambda value: value if isinstance(value, str) and value.startswith("TASKTRAIL_") else None,
)  # fmt: skip
def test_bad_environment_variables_are_refused_like_options(
    app: tasktrail.App,
    module_dsn: str,
    variable: str,
    value: str,
    args: tuple[str, ...],
    status: int,
    message: str,
) -> None:
    env = {**CLEAN_ENV, variable: value}
    if variable != "TASKTRAIL_DSN" and "--dsn" not in args:
        env["TASKTRAIL_DSN"] = module_dsn
    with nothing_changes(module_dsn):
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        assert_one_line_error(result, status, message)


def test_an_option_overrides_a_bad_environment_variable(
    app: tasktrail.App, module_dsn: str
) -> None:
    env = {**CLEAN_ENV, "TASKTRAIL_DSN": "mysql://x", "TASKTRAIL_SCHEMA": INJECTION}
    schema = module_dsn.partition("schema=")[2] or "tasktrail"
    result = CliRunner().invoke(
        cli, ["jobs", "--json", "--dsn", module_dsn, "--schema", schema], env=env
    )
    assert result.exit_code == 0, result.stderr
    assert "seed" in result.stdout


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("map", "nomodule:f", "in.csv"), 1, "cannot import module 'nomodule'"),
        (("map", "tests.badinput.tasks", "in.csv"), 1, "must look like module:function"),
        (("map", "tests.badinput.tasks:nothing", "in.csv"), 1, "has no function 'nothing'"),
        (("map", "tests.badinput.tasks:app", "in.csv"), 1, "not a function"),
        (("map", "tests.badinput.tasks:add", "missing.csv"), 1, "cannot read missing.csv"),
        (("map", "tests.badinput.tasks:add", "empty.csv"), 1, "a CSV input needs a header row"),
        (("map", "tests.badinput.tasks:add", "ragged.csv"), 1, "columns expected"),
        (("map", "tests.badinput.tasks:add", "bad.jsonl"), 1, "line 2: not JSON"),
        (("map", "tests.badinput.tasks:add", "in.csv", "--format", "xml"), 2, "is not one of"),
        (("map", "tests.badinput.tasks:add", "in.csv", "--processes", "0"), 1, "processes must be an integer"),
        (("map", "tests.badinput.tasks:add", "in.csv", "--timeout", "0"), 1, "must be positive seconds"),
        (("map", "tests.badinput.tasks:add", "in.csv", "--timeout", "inf"), 1, "must be positive seconds"),
        (("map", "tests.badinput.tasks:add", "in.csv", "--retries", "-1"), 1, "retries must be 0 or more"),
        (("map", "tests.badinput.tasks:add", "in.csv", "-o", "/nonexistent/out.csv"), 1, "is not a writable directory"),
        (("map", "tests.badinput.tasks:add", "in.csv", "--state", "/nonexistent/s.db"), 1, "does not exist"),
    ],
    ids=lambda value: " ".join(value[1:]) if isinstance(value, tuple) else None,
)  # fmt: skip
def test_map_refuses_bad_input_and_runs_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    status: int,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2,3\n")
    (tmp_path / "bad.jsonl").write_text("[1, 2]\n{oops\n")
    files = sorted(tmp_path.iterdir())
    result = CliRunner().invoke(cli, list(args), env=CLEAN_ENV, catch_exceptions=False)
    assert_one_line_error(result, status, message)
    assert sorted(tmp_path.iterdir()) == files  # no state, no output


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (
            ("jobs", "--limit", "x"),
            2,
            "Error: Invalid value for '--limit': 'x' is not a valid integer.",
        ),
        (("show", "999999"), 1, "Error: no job with id 999999"),
        (("enqueue", *APP, "echo", "--args", "[NaN]"), 1, "Error: arguments of echo[0] is nan"),
        (("--no-such-option",), 2, "Error: No such option '--no-such-option'"),
    ],
)
def test_the_installed_command_prints_one_line_and_exits_non_zero(
    app: tasktrail.App, module_dsn: str, args: tuple[str, ...], status: int, message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    env["TASKTRAIL_DSN"] = module_dsn
    with nothing_changes(module_dsn):
        done = subprocess.run(
            [tasktrail_command(), *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == status, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(message), done.stderr
