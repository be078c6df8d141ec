"""Property-based bad input: arbitrary text and values, on both backends.

Whatever a caller passes — any text as a ref, queue, task or schedule name, any value as
an argument — tasktrail either refuses it with a TasktrailError, changing nothing, or
stores it and gives back exactly what was given. Nothing else is ever raised.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import tasktrail
from tasktrail.config import parse_dsn, redact_dsn
from tasktrail.errors import ConfigurationError, TasktrailError
from tasktrail.schedule import parse_spec
from tasktrail.task import ENQUEUE_OPTIONS

from . import tasks
from .conftest import database_state, nothing_changes

#: Database round trips make examples slow-ish; the module's database is shared on purpose.
DB_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PURE_SETTINGS = settings(max_examples=200, deadline=None)

#: Any text, including NUL, surrogates, control characters and every plane of Unicode.
any_text = st.text(alphabet=st.characters(), max_size=60)
tricky_text = st.one_of(
    any_text,
    st.sampled_from(
        ["x'; DROP TABLE jobs; --", '"; --', "$$", "%s", "%(now)s", "{}", "{0}", "\x00", "\\u0000"]
    ),
)
#: JSON values and things that only look like them: NaN, infinities, huge ints, sets, bytes,
#: non-string keys, tuples.
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**4000), max_value=10**4000).filter(lambda n: abs(n) > 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
values = st.recursive(
    st.one_of(json_leaf, st.binary(max_size=4), st.sets(st.integers(), max_size=2)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(any_text, children, max_size=4),
        st.dictionaries(st.integers(), children, min_size=1, max_size=2),
    ),
    max_leaves=12,
)


#: Keyword argument names: anything but the names enqueue takes as its own options.
keyword = any_text.filter(lambda name: name not in ENQUEUE_OPTIONS)


def plain_json(value: Any) -> bool:
    """Whether ``value`` is JSON exactly as tasktrail promises to keep it."""
    if value is None or isinstance(value, bool | int | str):
        return not isinstance(value, str) or _encodable(value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(plain_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _encodable(k) and plain_json(v) for k, v in value.items())
    return False  # sets, bytes and the like are not JSON


def as_stored(value: Any) -> Any:
    """``value`` as JSON gives it back: a tuple becomes a list (JSON has only arrays)."""
    if isinstance(value, list | tuple):
        return [as_stored(item) for item in value]
    if isinstance(value, dict):
        return {key: as_stored(item) for key, item in value.items()}
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def refused_or_kept(app: tasktrail.App, dsn: str, enqueue: Any, check: Any) -> None:
    """Run ``enqueue``: a TasktrailError must leave the database as it was; a job must come
    back from ``app.job`` as ``check`` wants."""
    before = database_state(dsn)
    try:
        handle = enqueue()
    except TasktrailError:
        assert database_state(dsn) == before
        return
    check(app.job(handle.id))
    handle.cancel()  # keep the queue of the shared database short


@DB_SETTINGS
@given(ref_type=tricky_text, ref_id=st.one_of(tricky_text, st.integers()))
@example(ref_type="website", ref_id="x'; DROP TABLE jobs; --")
@example(ref_type="a" * 200, ref_id="\U0010ffff")
@example(ref_type="website", ref_id="\ud800")
def test_any_ref_is_refused_or_kept_exactly(
    app: tasktrail.App, module_dsn: str, ref_type: str, ref_id: str | int
) -> None:
    def check(job: tasktrail.Job) -> None:
        assert job.ref is not None
        assert (job.ref.type, job.ref.id) == (ref_type, str(ref_id))

    refused_or_kept(app, module_dsn, lambda: tasks.echo.enqueue(ref=(ref_type, ref_id)), check)


@DB_SETTINGS
@given(queue=tricky_text)
@example(queue="reports:eu-west.1")
def test_any_queue_name_is_refused_or_kept_exactly(
    app: tasktrail.App, module_dsn: str, queue: str
) -> None:
    def check(job: tasktrail.Job) -> None:
        assert job.queue == queue
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:\-]{0,199}", queue)

    refused_or_kept(app, module_dsn, lambda: tasks.echo.enqueue(queue=queue), check)


@DB_SETTINGS
@given(args=st.lists(values, max_size=3), kwargs=st.dictionaries(keyword, values, max_size=3))
@example(args=["a\x00b", {"k\x00": "\x00"}], kwargs={"note": "\\u0000"})
@example(args=[2**64, -(2**63) - 1, 1e308, -0.0, 5e-324], kwargs={})
def test_any_arguments_are_refused_or_come_back_exactly(
    app: tasktrail.App, module_dsn: str, args: list[Any], kwargs: dict[str, Any]
) -> None:
    def check(job: tasktrail.Job) -> None:
        assert plain_json(args) and plain_json(kwargs), "stored something that is not JSON"
        assert job.args == as_stored(args)
        assert job.kwargs == as_stored(kwargs)
        assert repr(job.args) == repr(as_stored(args))  # 1.0 stays a float, True a bool

    refused_or_kept(app, module_dsn, lambda: tasks.echo.enqueue(*args, **kwargs), check)
    if plain_json(args) and plain_json(kwargs):
        # Then it must have been kept, not refused: check that it was.
        assert app.jobs(task="echo", limit=1)[0].args == as_stored(args)


@DB_SETTINGS
@given(name=tricky_text)
def test_any_task_name_is_unknown_or_registered(
    app: tasktrail.App, module_dsn: str, name: str
) -> None:
    assume(name not in app.tasks)
    with nothing_changes(module_dsn), pytest.raises(tasktrail.UnknownTask, match="unknown task"):
        app.enqueue(name)


@DB_SETTINGS
@given(name=tricky_text)
@example(name="kpi:42/refresh")
def test_any_schedule_name_is_refused_or_kept_exactly(
    app: tasktrail.App, module_dsn: str, name: str
) -> None:
    assume(name != "seed")
    before = database_state(module_dsn)
    try:
        record = app.schedules.add(name, tasks.echo, every=3600)
    except TasktrailError:
        assert database_state(module_dsn) == before
        with pytest.raises(tasktrail.errors.ScheduleNotFound):
            app.schedules.get(name)
        return
    assert app.schedules.get(name).name == record.name == name
    app.schedules.remove(name)
    assert database_state(module_dsn) == before


@DB_SETTINGS
@given(task=st.one_of(st.none(), tricky_text), queue=st.one_of(st.none(), tricky_text))
@example(task=None, queue="\ud800")
def test_any_filter_text_finds_jobs_or_is_refused(
    app: tasktrail.App, module_dsn: str, task: str | None, queue: str | None
) -> None:
    try:
        found = app.jobs(task=task, queue=queue, ref_type=task, limit=5)
    except tasktrail.InvalidArguments:
        text = (task or "") + (queue or "")
        assert "\x00" in text or not _encodable(text)
        return
    assert all(job.task == task for job in found) if task is not None else True


@PURE_SETTINGS
@given(schema=tricky_text)
@example(schema="pg_catalog")
@example(schema="tasktrail\n")
def test_any_schema_name_is_refused_or_a_plain_identifier(schema: str) -> None:
    try:
        parsed = parse_dsn("postgresql://h/db", schema)
    except ConfigurationError:
        return
    assert re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", parsed.schema)  # type: ignore[union-attr]
    assert not parsed.schema.startswith("pg_")  # type: ignore[union-attr]


@PURE_SETTINGS
@given(dsn=st.one_of(any_text, st.builds(lambda a, b: a + "://" + b, any_text, any_text)))
@example(dsn="sqlite://user:s3cret@host/x.db")
@example(dsn="postgresql://user:s3cret@[::1")
def test_any_dsn_parses_or_is_refused_with_a_configuration_error(dsn: str) -> None:
    try:
        parse_dsn(dsn)
    except ConfigurationError as exc:
        assert "s3cret" not in str(exc)


@PURE_SETTINGS
@given(
    cron=st.one_of(
        tricky_text, st.lists(st.sampled_from("*/-,0123456789 "), max_size=20).map("".join)
    )
)
@example(cron="0 0 30 2 *")
@example(cron="*/5 * * * *")
def test_any_cron_text_is_refused_or_comes_due(cron: str) -> None:
    try:
        spec = parse_spec(cron=cron)
    except ConfigurationError:
        return
    from datetime import datetime, timezone

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert spec.next_after(start, start) > start


@PURE_SETTINGS
@given(
    user=st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
    password=st.text(alphabet=st.characters(codec="utf-8"), min_size=6, max_size=30),
)
def test_a_password_never_shows_in_a_redacted_dsn(user: str, password: str) -> None:
    encoded = quote(password, safe="")
    rest = "@db.internal:5432/shop?sslmode=require"
    assume(encoded not in f"postgresql://{quote(user, safe='')}:{rest}")  # only as the password
    shown = redact_dsn(f"postgresql://{quote(user, safe='')}:{encoded}{rest}")
    assert encoded not in shown
    assert shown == f"postgresql://{quote(user, safe='')}:***{rest}"
