"""Task registration and Task.prepare: everything is checked before the database."""

from __future__ import annotations

import inspect
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tasktrail import App
from tasktrail.clock import utcnow
from tasktrail.errors import (
    ConfigurationError,
    InvalidArguments,
    InvalidPayload,
    UnknownTask,
)
from tasktrail.job import NewJob, Ref
from tasktrail.task import ENQUEUE_OPTIONS, _fits, _plain_parameters


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def app(db_path: Path) -> App:
    return App(f"sqlite:///{db_path}")


def refresh(website_id: int, *, full: bool = False) -> int:
    return website_id


def test_prepare_builds_a_new_job_without_opening_the_database(app: App, db_path: Path) -> None:
    task = app.task(retries=2, queue="web", priority=5, timeout=10)(refresh)
    job = task.prepare(42, full=True, ref=("website", 42))
    assert job == NewJob(
        task=f"{__name__}.refresh",
        queue="web",
        args_json="[42]",
        kwargs_json='{"full":true}',
        ref=Ref("website", "42"),
        priority=5,
        max_attempts=3,
        timeout=10.0,
        run_at=None,
    )
    assert not db_path.exists()


def test_default_options(app: App) -> None:
    job = app.task(refresh).prepare(1)
    assert (job.queue, job.priority, job.max_attempts, job.timeout, job.ref) == (
        "default",
        0,
        1,
        None,
        None,
    )
    assert json.loads(job.kwargs_json) == {}


def test_prepare_overrides_queue_and_priority(app: App) -> None:
    job = app.task(queue="web", priority=1)(refresh).prepare(1, queue="slow", priority=-3)
    assert (job.queue, job.priority) == ("slow", -3)


def test_a_task_can_still_be_called_directly(app: App) -> None:
    assert app.task(refresh)(5) == 5


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing a required argument: 'website_id'"),
        ((1, 2), {}, "too many positional arguments"),
        ((1,), {"nope": 1}, "unexpected keyword argument 'nope'"),
        ((1,), {"website_id": 1}, "multiple values for argument 'website_id'"),
    ],
)
def test_arguments_that_do_not_fit_the_signature(
    app: App, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    task = app.task(refresh)
    with pytest.raises(InvalidArguments, match=f"cannot enqueue {task.name}: .*{message}"):
        task.prepare(*args, **kwargs)


def test_keyword_only_parameter_cannot_be_positional(app: App) -> None:
    with pytest.raises(InvalidArguments, match="too many positional"):
        app.task(refresh).prepare(1, True)


def test_arguments_that_are_not_json(app: App) -> None:
    task = app.task(refresh)
    with pytest.raises(InvalidPayload, match=r"arguments of .*refresh\[0\] is a set"):
        task.prepare({1})
    with pytest.raises(InvalidPayload, match=r"keyword arguments of .*refresh\['full'\] is nan"):
        task.prepare(1, full=float("nan"))


@pytest.mark.parametrize("option", ENQUEUE_OPTIONS)
def test_parameter_named_like_an_enqueue_option_is_refused_at_registration(
    app: App, option: str
) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def clashing(x, {option}=None):\n    return x", namespace)
    with pytest.raises(ConfigurationError, match=f"has a parameter named '{option}'"):
        app.task(namespace["clashing"])
    assert not app.tasks


def test_delay_and_run_at_together_are_refused(app: App) -> None:
    with pytest.raises(InvalidArguments, match="pass delay or run_at, not both"):
        app.task(refresh).prepare(1, delay=5, run_at=datetime.now(timezone.utc))


def test_naive_run_at_is_refused(app: App) -> None:
    with pytest.raises(InvalidArguments, match=r"run_at .* has no timezone"):
        app.task(refresh).prepare(1, run_at=datetime(2030, 1, 1, 12, 0))


def test_run_at_is_stored_in_utc(app: App) -> None:
    tokyo = timezone(timedelta(hours=9))
    job = app.task(refresh).prepare(1, run_at=datetime(2030, 1, 1, 21, 0, tzinfo=tokyo))
    assert job.run_at == datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert job.run_at is not None
    assert job.run_at.utcoffset() == timedelta(0)


def test_run_at_must_be_a_datetime(app: App) -> None:
    with pytest.raises(InvalidArguments, match="run_at must be a datetime, got str"):
        app.task(refresh).prepare(1, run_at="2030-01-01T00:00:00Z")  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", [30, 30.0, timedelta(seconds=30)])
def test_delay_sets_run_at_from_now(app: App, delay: float | timedelta) -> None:
    before = utcnow()
    job = app.task(refresh).prepare(1, delay=delay)
    after = utcnow()
    assert job.run_at is not None
    assert before + timedelta(seconds=30) <= job.run_at <= after + timedelta(seconds=30)


def test_zero_delay_is_allowed(app: App) -> None:
    before = utcnow()
    job = app.task(refresh).prepare(1, delay=0)
    assert job.run_at is not None
    assert job.run_at >= before


@pytest.mark.parametrize(
    ("delay", "message"),
    [
        (-1, "delay must not be negative"),
        (timedelta(seconds=-1), "delay must not be negative"),
        (float("nan"), "delay must not be negative"),
        (True, "delay must be seconds or a timedelta"),
        ("5s", "delay must be seconds or a timedelta"),
    ],
)
def test_bad_delays(app: App, delay: object, message: str) -> None:
    with pytest.raises(InvalidArguments, match=message):
        app.task(refresh).prepare(1, delay=delay)  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", [float("inf"), 1e20])
def test_delay_too_large_is_refused_cleanly(app: App, delay: float) -> None:
    with pytest.raises(InvalidArguments):
        app.task(refresh).prepare(1, delay=delay)


@pytest.mark.parametrize("priority", [32768, -32769, True, 1.0, "1"])
def test_bad_priority_in_prepare(app: App, priority: object) -> None:
    with pytest.raises(InvalidArguments, match="priority must be an integer from -32768 to 32767"):
        app.task(refresh).prepare(1, priority=priority)  # type: ignore[arg-type]


def test_priority_none_means_the_tasks_own(app: App) -> None:
    assert app.task(priority=3)(refresh).prepare(1, priority=None).priority == 3


@pytest.mark.parametrize("priority", [32767, -32768])
def test_priority_limits_are_accepted(app: App, priority: int) -> None:
    assert app.task(refresh).prepare(1, priority=priority).priority == priority


def test_bad_priority_at_registration(app: App) -> None:
    with pytest.raises(InvalidArguments, match="priority must be an integer"):
        app.task(priority=100_000)(refresh)


@pytest.mark.parametrize(
    "queue", ["", "has space", "-leading", "1abc", "q" * 201, "é", "a/b", 5, None]
)
def test_bad_queue_names_at_registration(app: App, queue: object) -> None:
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        app.task(queue=queue)(refresh)  # type: ignore[arg-type]


@pytest.mark.parametrize("queue", ["", "has space", "q" * 201])
def test_bad_queue_names_in_prepare(app: App, queue: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        app.task(refresh).prepare(1, queue=queue)


def test_queue_name_with_a_trailing_newline_is_refused(app: App) -> None:
    with pytest.raises(ConfigurationError, match="invalid queue name"):
        app.task(refresh).prepare(1, queue="default\n")


@pytest.mark.parametrize("queue", ["default", "web.fetch", "kpi:slow", "a-b_c", "_", "Q" * 200])
def test_good_queue_names(app: App, queue: str) -> None:
    assert app.task(refresh).prepare(1, queue=queue).queue == queue


def test_bad_ref_in_prepare(app: App) -> None:
    with pytest.raises(InvalidArguments, match="ref must look like 'type:id'"):
        app.task(refresh).prepare(1, ref="website")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"retries": -1}, InvalidArguments, "retries must be 0 or more"),
        ({"retries": True}, InvalidArguments, "retries must be an integer"),
        ({"retries": 1.5}, InvalidArguments, "retries must be an integer"),
        ({"timeout": 0}, ConfigurationError, "must be positive seconds"),
        ({"timeout": -1}, ConfigurationError, "must be positive seconds"),
        ({"timeout": True}, ConfigurationError, "must be positive seconds"),
        ({"timeout": float("nan")}, ConfigurationError, "must be positive seconds"),
        ({"name": "bad name"}, ConfigurationError, "invalid task name"),
        ({"retry_backoff": 0.5}, InvalidArguments, "factor must be at least 1"),
        ({"retry_jitter": 2}, InvalidArguments, "jitter must be between 0 and 1"),
        ({"retry_delay": -1}, InvalidArguments, "must not be negative"),
    ],
)
def test_bad_registration_options(
    app: App, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        app.task(**options)(refresh)
    assert not app.tasks


def test_task_names_and_the_registry(app: App) -> None:
    named = app.task(name="kpi.refresh")(refresh)
    assert named.name == "kpi.refresh"
    assert app.get_task("kpi.refresh") is named
    # Registering the same function under the same name again is harmless...
    assert app.task(name="kpi.refresh")(refresh).func is refresh

    # ...another function under a taken name is not.
    def other(website_id: int) -> None:
        pass

    with pytest.raises(InvalidArguments, match=r"'kpi\.refresh' is already registered"):
        app.task(name="kpi.refresh")(other)
    with pytest.raises(UnknownTask, match=r"unknown task 'nope'; registered tasks: kpi\.refresh"):
        app.get_task("nope")


def test_retry_policy_comes_from_the_options(app: App) -> None:
    task = app.task(retries=4, retry_delay=2, retry_backoff=3, retry_max_delay=50, retry_jitter=0)(
        refresh
    )
    assert task.retry.max_attempts == 5
    assert [task.retry.delay(n) for n in (1, 2, 3, 4)] == [2, 6, 18, 50]


def test_app_creation_validates_the_dsn_but_opens_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        App("mysql://nowhere/db")
    missing_dir = tmp_path / "not" / "yet"
    App(f"sqlite:///{missing_dir}/jobs.db")  # opening would fail: the directory is missing
    assert not missing_dir.exists()


def test_app_dsn_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TASKTRAIL_DSN", f"sqlite:///{tmp_path}/env.db")
    assert App().dsn == f"sqlite:///{tmp_path}/env.db"
    assert App(f"sqlite:///{tmp_path}/arg.db").dsn == f"sqlite:///{tmp_path}/arg.db"
    monkeypatch.setenv("TASKTRAIL_DSN", "postgresql://u:secret@h/db")
    assert App().url == "postgresql://u:***@h/db"


def _f0() -> None: ...
def _f2(a: int, b: int) -> None: ...
def _f3(a: int, b: int = 1, c: int = 2) -> None: ...
def _star(a: int, *rest: int) -> None: ...
def _kwonly(a: int, *, b: int) -> None: ...


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}), ((1,), {}), ((1, 2), {}), ((1, 2, 3), {}), ((1, 2, 3, 4), {}),
    ((), {"a": 1}), ((), {"a": 1, "b": 2}), ((1,), {"b": 2}), ((1,), {"a": 2}),
    ((1,), {"c": 3}), ((), {"b": 2}), ((1, 2), {"c": 3}), ((1,), {"zz": 1}),
    ((), {"rest": 1}), ((1, 2), {"b": 3}),
]  # fmt: skip


@pytest.mark.parametrize("func", [_f0, _f2, _f3, _star, _kwonly])
def test_the_quick_argument_check_agrees_with_signature_bind(func: Any) -> None:
    signature = inspect.signature(func)
    plain = _plain_parameters(signature)
    assert (plain is None) == (func in (_star, _kwonly))
    for args, kwargs in CALLS:
        try:
            signature.bind(*args, **kwargs)
            binds = True
        except TypeError:
            binds = False
        # It may only say yes to a call that binds; for plain functions it says yes to
        # every one that does (else prepare would be slow for no reason).
        assert _fits(plain, args, kwargs) == (binds and plain is not None), (args, kwargs)


def test_a_call_that_does_not_fit_names_what_is_wrong(app: App) -> None:
    @app.task(name="two")
    def two(a: int, b: int = 0) -> None: ...

    for args, kwargs, message in [
        ((), {}, "missing a required argument: 'a'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1,), {"a": 1}, "multiple values for argument 'a'"),
        ((1,), {"c": 1}, "got an unexpected keyword argument 'c'"),
    ]:
        with pytest.raises(InvalidArguments, match=message):
            two.prepare(*args, **kwargs)
    assert json.loads(two.prepare(1, b=2).kwargs_json) == {"b": 2}
