"""The Python API fed bad input: each case is refused with a TasktrailError that names the
problem, and the database is exactly as before (on SQLite and on PostgreSQL).

Injection attempts are data like any other: in places that take names (tasks, queues,
schedules, schemas) they are refused by the name rules; in places that take any text
(refs, arguments) they are stored and come back exactly, and nothing else happens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import tasktrail
from tasktrail import App
from tasktrail.errors import (
    ConfigurationError,
    InvalidArguments,
    InvalidPayload,
    InvalidTransition,
    JobNotFound,
    ScheduleNotFound,
    TasktrailError,
    UnknownTask,
)
from tasktrail.job import NewJob

from . import tasks
from .conftest import database_state, nothing_changes

#: Text that means something to SQL, shells, format strings or templates.
INJECTIONS = [
    "x'; DROP TABLE jobs; --",
    '"; DROP SCHEMA tasktrail CASCADE; --',
    "$$; DROP TABLE jobs; $$",
    "%s",
    "%(now)s",
    "{}",
    "{0.__class__}",
    "$(touch /tmp/tasktrail-pwned)",
    "a\x00b",
    "\u202e\u0646\u00e9",  # right-to-left override, Arabic, an accent
]

Call = Callable[[App], Any]


def _function(x: int = 1) -> int:
    return x


def register(**options: Any) -> Call:
    """A call registering ``_function`` as a task with ``options``."""
    return lambda app: app.task(**options)(_function)


def enqueue(*args: Any, **kwargs: Any) -> Call:
    return lambda app: tasks.echo.enqueue(*args, **kwargs)


def schedule(name: Any = "new", task: Any = "echo", **options: Any) -> Call:
    if "cron" not in options and "every" not in options:
        options["every"] = 60
    return lambda app: app.schedules.add(name, task, **options)


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


NAIVE = datetime(2030, 1, 1)
LATER = datetime(2030, 1, 1, tzinfo=timezone.utc)
MEGABYTE = "x" * 1_000_001

# fmt: off
CASES: list[Any] = [
    # -- App ----------------------------------------------------------------------------
    pytest.param(lambda app: App(123), ConfigurationError, "a DSN is text", id="app-dsn-int"),
    pytest.param(lambda app: App(b"sqlite:///x.db"), ConfigurationError, "got bytes", id="app-dsn-bytes"),
    pytest.param(lambda app: App("mysql://h/db"), ConfigurationError, "unsupported DSN scheme", id="app-dsn-mysql"),
    pytest.param(lambda app: App("sqlite:///a\x00b.db"), ConfigurationError, "NUL", id="app-dsn-nul"),
    pytest.param(lambda app: App("postgresql://h:99999/db"), ConfigurationError, "bad port", id="app-dsn-port"),
    pytest.param(lambda app: App("sqlite:///x.db?synchronous=0; DROP"), ConfigurationError, "synchronous", id="app-dsn-option"),
    *[
        pytest.param(lambda app, s=s: App("postgresql://h/db", schema=s), ConfigurationError, "schema name", id=f"app-schema-{i}")
        for i, s in enumerate([*INJECTIONS, "Upper", "a" * 64, "", "pg_toast", "information_schema", 5])
    ],
    pytest.param(lambda app: App("postgresql://h/db?schema=x%27%3B%20DROP"), ConfigurationError, "invalid schema name", id="app-dsn-schema"),
    # -- registering tasks ----------------------------------------------------------------
    *[
        pytest.param(register(name=name), ConfigurationError, "invalid task name", id=f"task-name-{i}")
        for i, name in enumerate([*INJECTIONS, "", "a" * 201, "1abc", "has space"])
    ],
    *[
        pytest.param(register(name="t", queue=queue), ConfigurationError, "invalid queue name", id=f"task-queue-{i}")
        for i, queue in enumerate([*INJECTIONS, "", None, 5])
    ],
    pytest.param(register(name="t", retries=-1), InvalidArguments, "retries must be 0 or more", id="task-retries-negative"),
    pytest.param(register(name="t", retries=1.5), InvalidArguments, "retries must be an integer", id="task-retries-float"),
    pytest.param(register(name="t", retries="3"), InvalidArguments, "retries must be an integer", id="task-retries-str"),
    pytest.param(register(name="t", retries=10**7), InvalidArguments, "at most 1,000,000", id="task-retries-huge"),
    *[
        pytest.param(register(name="t", timeout=timeout), ConfigurationError, "must be positive seconds", id=f"task-timeout-{timeout}")
        for timeout in [0, -1, "5", math.nan, math.inf, True]
    ],
    pytest.param(register(name="t", priority=40000), InvalidArguments, "priority must be an integer", id="task-priority"),
    pytest.param(register(name="t", retry_delay="1s"), InvalidArguments, "retry_delay must be a number", id="task-delay-str"),
    pytest.param(register(name="t", retry_delay=-1), InvalidArguments, "must not be negative", id="task-delay-negative"),
    pytest.param(register(name="t", retry_delay=math.inf), InvalidArguments, "must be finite", id="task-delay-inf"),
    pytest.param(register(name="t", retry_max_delay=math.inf), InvalidArguments, "at most", id="task-max-delay-inf"),
    pytest.param(register(name="t", retry_max_delay=1e13), InvalidArguments, "at most", id="task-max-delay-huge"),
    pytest.param(register(name="t", retry_backoff=0.5), InvalidArguments, "at least 1", id="task-backoff"),
    pytest.param(register(name="t", retry_jitter=2), InvalidArguments, "between 0 and 1", id="task-jitter"),
    pytest.param(register(name="t", unique=""), ConfigurationError, "unique of task", id="task-unique-empty"),
    pytest.param(register(name="t", unique=5), ConfigurationError, "unique of task", id="task-unique-int"),
    pytest.param(register(name="t", lock=""), ConfigurationError, "lock of task", id="task-lock-empty"),
    pytest.param(lambda app: app.task(5), InvalidArguments, "takes a function", id="task-not-callable"),
    pytest.param(lambda app: app.task(name="echo")(_function), InvalidArguments, "already registered", id="task-duplicate"),
    # -- enqueue: tasks, arguments, payload -------------------------------------------------
    *[
        pytest.param(lambda app, n=n: app.enqueue(n), UnknownTask, "unknown task", id=f"unknown-task-{i}")
        for i, n in enumerate([*INJECTIONS, "os.system", "subprocess.call", "tests.integration.tasks.record", 5, None])
    ],
    pytest.param(lambda app: tasks.add.enqueue(1), InvalidArguments, "missing a required argument: 'b'", id="args-missing"),
    pytest.param(lambda app: tasks.add.enqueue(1, 2, 3), InvalidArguments, "too many positional", id="args-too-many"),
    pytest.param(lambda app: tasks.add.enqueue(1, c=2), InvalidArguments, "cannot enqueue add", id="args-unknown-keyword"),
    pytest.param(enqueue(object()), InvalidPayload, "is a object, which is not JSON", id="arg-object"),
    pytest.param(enqueue({1, 2}), InvalidPayload, "set", id="arg-set"),
    pytest.param(enqueue(b"bytes"), InvalidPayload, "bytes", id="arg-bytes"),
    pytest.param(enqueue(NAIVE), InvalidPayload, "datetime", id="arg-datetime"),
    pytest.param(enqueue(math.nan), InvalidPayload, "JSON cannot represent", id="arg-nan"),
    pytest.param(enqueue([-math.inf]), InvalidPayload, "JSON cannot represent", id="arg-inf"),
    pytest.param(enqueue({1: "a"}), InvalidPayload, "JSON keys are strings", id="arg-int-key"),
    pytest.param(enqueue("\ud800"), InvalidPayload, "lone surrogate", id="arg-surrogate"),
    pytest.param(enqueue(10**5000), InvalidPayload, "integer too large", id="arg-big-int"),
    pytest.param(enqueue(nested(150)), InvalidPayload, "nested more than 100 levels", id="arg-deep"),
    pytest.param(enqueue(MEGABYTE), InvalidPayload, "over the 1,000,000-byte limit", id="arg-megabyte"),
    pytest.param(enqueue(note=MEGABYTE), InvalidPayload, "over the 1,000,000-byte limit", id="kwarg-megabyte"),
    pytest.param(enqueue(*["x" * 1000] * 1001), InvalidPayload, "over the 1,000,000-byte limit", id="args-many"),
    pytest.param(enqueue(note={"k": object()}), InvalidPayload, "keyword arguments of echo['note']['k']", id="kwarg-nested"),
    # -- enqueue options ----------------------------------------------------------------------
    *[
        pytest.param(enqueue(ref=ref), InvalidArguments, "ref", id=f"ref-{i}")
        for i, ref in enumerate(
            [
                123, "nocolon", ":x", "x:", ("a",), ("a", "b", "c"), ("", "1"), ("t", ""),
                ("t", None), ("t", 1.5), ("t", True), (5, "1"), ("t", "a\x00b"),
                ("a\x00b", "1"), ("t", "x" * 201), ("x" * 201, "1"), {"type": "t"},
                ("t", "\ud800"), ("\udfff", "1"), "t:\udcff",
            ]
        )
    ],
    *[
        pytest.param(enqueue(queue=queue), ConfigurationError, "invalid queue name", id=f"queue-{i}")
        for i, queue in enumerate([*INJECTIONS, "", "a" * 201, 5])
    ],
    *[
        pytest.param(enqueue(priority=p), InvalidArguments, "priority must be an integer", id=f"priority-{p!r}")
        for p in [1.5, "1", True, 32768, -32769]
    ],
    *[
        pytest.param(enqueue(delay=d), InvalidArguments, "delay", id=f"delay-{d!r}")
        for d in [-1, "5", math.nan, math.inf, 1e300, True, timedelta(seconds=-1), timedelta.max]
    ],
    *[
        pytest.param(enqueue(run_at=r), InvalidArguments, "run_at", id=f"run-at-{i}")
        for i, r in enumerate([NAIVE, "2030-01-01", 5, date(2030, 1, 1)])
    ],
    pytest.param(enqueue(delay=1, run_at=LATER), InvalidArguments, "not both", id="delay-and-run-at"),
    pytest.param(enqueue(connection=object()), InvalidArguments, "connection=", id="connection-object"),
    pytest.param(enqueue(connection="dbname=x"), InvalidArguments, "connection=", id="connection-str"),
    pytest.param(lambda app: tasks.unique_by_ref.enqueue(), InvalidArguments, "needs the job's ref", id="unique-without-ref"),
    pytest.param(lambda app: tasks.locked.enqueue("k" * 600), InvalidArguments, "1 to 500 characters", id="lock-key-long"),
    pytest.param(lambda app: tasks.locked.enqueue("a\x00b"), InvalidArguments, "1 to 500 characters", id="lock-key-nul"),
    pytest.param(lambda app: tasks.echo.prepare(queue="$$"), ConfigurationError, "invalid queue name", id="prepare-queue"),
    # -- enqueue_many: all or nothing ----------------------------------------------------------
    pytest.param(lambda app: app.enqueue_many(None), InvalidArguments, "enqueue_many takes jobs", id="many-none"),
    pytest.param(lambda app: app.enqueue_many(5), InvalidArguments, "enqueue_many takes jobs", id="many-int"),
    pytest.param(lambda app: app.enqueue_many("abc"), InvalidArguments, "got str", id="many-str"),
    pytest.param(
        lambda app: app.enqueue_many([tasks.echo.prepare("fine"), None]),
        InvalidArguments, "got NoneType", id="many-valid-then-none",
    ),
    pytest.param(
        lambda app: app.enqueue_many(
            [tasks.echo.prepare("fine"), NewJob("os.system", "default", '["id"]', "{}", None, 0, 1, None, None)]
        ),
        UnknownTask, "unknown task 'os.system'", id="many-valid-then-unknown",
    ),
    pytest.param(
        lambda app: app.enqueue_many(tasks.echo.prepare(i) if i < 3 else tasks.add.prepare(i) for i in range(5)),
        InvalidArguments, "missing a required argument", id="many-generator-fails-midway",
    ),
    # -- looking jobs up --------------------------------------------------------------------
    *[
        pytest.param(lambda app, v=v: app.job(v), InvalidArguments, "a job id is an integer", id=f"job-id-{v!r}")
        for v in ["1", 1.5, True, None]
    ],
    *[
        pytest.param(lambda app, m=m, v=v: getattr(app, m)(v), JobNotFound, "no job with id", id=f"{m}-missing-{v}")
        for m in ("job", "events", "cancel", "retry")
        for v in [0, -1, 999_999, 2**70]
    ],
    pytest.param(lambda app: app.events("1"), InvalidArguments, "a job id is an integer", id="events-id-str"),
    pytest.param(lambda app: app.cancel(True), InvalidArguments, "a job id is an integer", id="cancel-id-bool"),
    pytest.param(lambda app: app.retry(1.0), InvalidArguments, "a job id is an integer", id="retry-id-float"),
    pytest.param(lambda app: app.retry(app.jobs(status="queued")[0].id), InvalidTransition, "queued", id="retry-queued"),
    pytest.param(lambda app: app.cancel(app.jobs(status="cancelled")[0].id), InvalidTransition, "cancelled", id="cancel-cancelled"),
    pytest.param(lambda app: app.jobs(ref="nocolon"), InvalidArguments, "ref must look like", id="jobs-ref"),
    pytest.param(lambda app: app.jobs(ref=("t", "\ud800")), InvalidArguments, "lone surrogate", id="jobs-ref-surrogate"),
    pytest.param(lambda app: app.cancel(1, reason="\ud800"), InvalidArguments, "reason must be UTF-8 text", id="cancel-reason-surrogate"),
    pytest.param(lambda app: app.cancel(1, reason=5), InvalidArguments, "reason must be UTF-8 text", id="cancel-reason-int"),
    pytest.param(lambda app: app.jobs(status="bogus"), InvalidArguments, "unknown status 'bogus'", id="jobs-status"),
    pytest.param(lambda app: app.jobs(status=5), InvalidArguments, "status", id="jobs-status-int"),
    pytest.param(lambda app: app.jobs(status=["queued", None]), InvalidArguments, "unknown status None", id="jobs-status-none"),
    pytest.param(lambda app: app.jobs(status="queued; DROP"), InvalidArguments, "unknown status", id="jobs-status-injection"),
    *[
        pytest.param(lambda app, v=v: app.jobs(limit=v), InvalidArguments, "limit must be 0 or more", id=f"jobs-limit-{v!r}")
        for v in [-1, "5", 1.5, True, 2**70]
    ],
    pytest.param(lambda app: app.jobs(since="yesterday"), InvalidArguments, "since must be a datetime", id="jobs-since-str"),
    pytest.param(lambda app: app.jobs(since=NAIVE), InvalidArguments, "has no timezone", id="jobs-since-naive"),
    pytest.param(lambda app: app.jobs(until=5), InvalidArguments, "until must be a datetime", id="jobs-until-int"),
    pytest.param(lambda app: app.jobs(worker_id="x"), InvalidArguments, "worker_id must be an integer", id="jobs-worker-str"),
    pytest.param(lambda app: app.jobs(worker_id=True), InvalidArguments, "worker_id must be an integer", id="jobs-worker-bool"),
    *[
        pytest.param(lambda app, k=k, v=v: app.jobs(**{k: v}), InvalidArguments, "must be UTF-8 text without NUL", id=f"jobs-{k}-{v!r}")
        for k in ("task", "queue", "ref_type")
        for v in (5, ["a"], "a\x00b", "\udcff")
    ],
    pytest.param(lambda app: app.stats(5), InvalidArguments, "window must be a timedelta", id="stats-int"),
    pytest.param(lambda app: app.stats(timedelta(0)), InvalidArguments, "longer than zero", id="stats-zero"),
    pytest.param(lambda app: app.stats(timedelta(hours=-1)), InvalidArguments, "longer than zero", id="stats-negative"),
    pytest.param(lambda app: app.activity(60), InvalidArguments, "window must be a timedelta", id="activity-int"),
    pytest.param(lambda app: app.activity(timedelta(hours=1), 0), InvalidArguments, "buckets must be a whole number from 1 to 1000", id="activity-buckets-zero"),
    pytest.param(lambda app: app.activity(timedelta(hours=1), 2.5), InvalidArguments, "buckets must be", id="activity-buckets-float"),
    pytest.param(lambda app: app.workers(limit=-1), InvalidArguments, "limit must be 0 or more", id="workers-limit"),
    pytest.param(lambda app: app.workers(limit="10"), InvalidArguments, "limit must be 0 or more", id="workers-limit-str"),
    # -- schedules -----------------------------------------------------------------------------
    *[
        pytest.param(schedule(name), ConfigurationError, "invalid schedule name", id=f"schedule-name-{i}")
        for i, name in enumerate([*INJECTIONS[:5], "a\x00b", "", None, 5, "a" * 201, "é", "new\n"])
    ],
    *[
        pytest.param(schedule(cron=cron), ConfigurationError, "cron", id=f"cron-{i}")
        for i, cron in enumerate(
            ["* * *", "61 * * * *", "* * * * * *", "@hourly", "", "x'; DROP TABLE jobs; --", "*/0 * * * *", 5, "0 0 30 2 *"]
        )
    ],
    *[
        pytest.param(schedule(every=every), ConfigurationError, "every must be", id=f"every-{every!r}")
        for every in [0, -5, 0.5, "5m", math.nan, math.inf, 1e300, timedelta(0), timedelta(days=-1), True]
    ],
    pytest.param(schedule(cron="* * * * *", every=60), ConfigurationError, "exactly one of", id="cron-and-every"),
    pytest.param(schedule(every=None), ConfigurationError, "exactly one of", id="neither"),
    pytest.param(schedule(catch_up="bogus"), ConfigurationError, "catch_up must be one of", id="catch-up"),
    pytest.param(schedule(args="abc"), InvalidArguments, "must be a list or tuple", id="schedule-args-str"),
    pytest.param(schedule(args=5), InvalidArguments, "must be a list or tuple", id="schedule-args-int"),
    pytest.param(schedule(kwargs=[1]), InvalidArguments, "must be a dict", id="schedule-kwargs-list"),
    pytest.param(schedule(kwargs={"a": object()}), InvalidPayload, "not JSON", id="schedule-kwargs-payload"),
    pytest.param(schedule(args=[MEGABYTE]), InvalidPayload, "over the 1,000,000-byte limit", id="schedule-args-megabyte"),
    pytest.param(schedule(task="add", args=[1]), InvalidArguments, "missing a required argument", id="schedule-signature"),
    pytest.param(schedule(ref="nocolon"), InvalidArguments, "ref must look like", id="schedule-ref"),
    pytest.param(schedule(queue="x'; DROP TABLE jobs; --"), ConfigurationError, "invalid queue name", id="schedule-queue"),
    pytest.param(schedule(priority=1e9), InvalidArguments, "priority", id="schedule-priority"),
    pytest.param(schedule(task="nope"), UnknownTask, "unknown task 'nope'", id="schedule-task-unknown"),
    pytest.param(schedule(task=5), InvalidArguments, "must be a task or its name", id="schedule-task-int"),
    pytest.param(schedule(task=None), InvalidArguments, "must be a task or its name", id="schedule-task-none"),
    pytest.param(schedule("seed"), ConfigurationError, "already exists", id="schedule-exists"),
    *[
        pytest.param(lambda app, m=m, n=n: getattr(app.schedules, m)(n), ScheduleNotFound, "no schedule named", id=f"schedules-{m}-{i}")
        for m in ("get", "pause", "resume", "remove")
        for i, n in enumerate(["nope", INJECTIONS[0], "a\x00b", 5, None])
    ],
    *[
        pytest.param(lambda app, v=v: app.schedules.ticks("seed", limit=v), InvalidArguments, "limit", id=f"ticks-limit-{v!r}")
        for v in [-1, "a", 1.5, True]
    ],
]
# fmt: on


@pytest.mark.parametrize(("call", "error", "message"), CASES)
def test_bad_input_is_refused_and_changes_nothing(
    app: App, module_dsn: str, call: Call, error: type[TasktrailError], message: str
) -> None:
    registered = dict(app.tasks)
    with nothing_changes(module_dsn), pytest.raises(TasktrailError) as raised:
        call(app)
    assert isinstance(raised.value, error), f"{type(raised.value).__name__}: {raised.value}"
    assert message in str(raised.value)
    assert app.tasks == registered  # a refused registration registers nothing


@pytest.mark.parametrize("text", INJECTIONS)
def test_injections_in_refs_and_arguments_are_stored_as_data(
    app: App, module_dsn: str, text: str
) -> None:
    before = database_state(module_dsn)
    ref = ("website", text) if "\x00" not in text else ("website", "nul")
    handle = tasks.echo.enqueue(text, [text], ref=ref, **{"note": text, text: {text: text}})
    job = app.job(handle.id)
    assert job.args == [text, [text]]
    assert job.kwargs == {"note": text, text: {text: text}}
    assert job.ref is not None and (job.ref.type, job.ref.id) == ref
    assert [j.id for j in app.jobs(ref=ref)] == [handle.id]
    # One job and its enqueued event were added, nothing else changed or went missing.
    after = database_state(module_dsn)
    assert {t: len(rows) - len(before[t]) for t, rows in after.items()} == {
        "jobs": 1,
        "events": 1,
        "workers": 0,
        "schedules": 0,
        "schedule_ticks": 0,
        "migrations": 0,
    }
    assert handle.cancel(reason=text).status == "cancelled"
    assert app.events(handle.id)[-1].detail["reason"] == text


@pytest.mark.parametrize("name", ["nope", INJECTIONS[0], "a\x00b", 5, None])
def test_ticks_of_a_schedule_that_cannot_exist_are_none(
    app: App, module_dsn: str, name: Any
) -> None:
    with nothing_changes(module_dsn):
        assert app.schedules.ticks(name) == []


MAP_CASES = {
    "processes-0": ({"processes": 0}, ConfigurationError, "processes must be an integer from 1"),
    "processes-negative": ({"processes": -1}, ConfigurationError, "processes must be an integer"),
    "processes-str": ({"processes": "2"}, ConfigurationError, "processes must be an integer"),
    "timeout-0": ({"timeout": 0}, ConfigurationError, "must be positive seconds"),
    "timeout-inf": ({"timeout": math.inf}, ConfigurationError, "must be positive seconds"),
    "retries-negative": ({"retries": -1}, InvalidArguments, "retries must be 0 or more"),
    "retries-str": ({"retries": "x"}, InvalidArguments, "retries must be an integer"),
    "state-int": ({"state": 5}, InvalidArguments, "state must be a file path"),
    "state-no-dir": ({"state": "/nonexistent-dir/state.db"}, ConfigurationError, "does not exist"),
    "state-nul": ({"state": "/tmp/a\x00b.db"}, ConfigurationError, "NUL"),
    "items-int": ({"items": 5}, InvalidArguments, "map takes an iterable of items"),
    "items-object": ({"items": [(1, 2), (object(), 1)]}, InvalidPayload, "not JSON"),
    "items-megabyte": ({"items": [(MEGABYTE, 1)]}, InvalidPayload, "over the 1,000,000-byte limit"),
    "func-int": ({"func": 5}, InvalidArguments, "map needs a function"),
    "func-lambda": ({"func": lambda x: x}, ConfigurationError, "invalid task name"),
}


def _add(a: int, b: int) -> int:
    return a + b


@pytest.mark.parametrize(("options", "error", "message"), MAP_CASES.values(), ids=MAP_CASES.keys())
def test_map_refuses_bad_input_before_running_anything(
    options: dict[str, Any], error: type[TasktrailError], message: str, tmp_path: Path
) -> None:
    arguments: dict[str, Any] = {
        "func": _add,
        "items": [(1, 2)],
        "state": str(tmp_path / "s.db"),
    }
    arguments.update(options)
    func, items = arguments.pop("func"), arguments.pop("items")
    with pytest.raises(TasktrailError) as raised:
        list(App("sqlite:///unused.db").map(func, items, **arguments))
    assert isinstance(raised.value, error), f"{type(raised.value).__name__}: {raised.value}"
    assert message in str(raised.value)
    assert not (tmp_path / "s.db").exists() or not _map_jobs(tmp_path / "s.db")
    assert not Path("unused.db").exists()


def _map_jobs(state: Path) -> list[tasktrail.Job]:
    app = App(f"sqlite:///{state}")
    try:
        return app.jobs(limit=None)
    finally:
        app.close()


def test_map_with_one_bad_item_after_a_thousand_stores_nothing(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    items: list[Any] = [(i, i) for i in range(1000)] + [(object(), 1)]
    with pytest.raises(InvalidPayload):
        list(App("sqlite:///unused.db").map(_add, items, state=str(state)))
    assert _map_jobs(state) == []
