"""Schedule planning (tasktrail.schedule) and the key templates of Task.prepare.

Pure functions over times: every test passes the times it means; nothing sleeps and
nothing opens a database.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tasktrail import App
from tasktrail.errors import ConfigurationError, InvalidArguments, UnknownTask
from tasktrail.job import Ref
from tasktrail.schedule import (
    MAX_CATCH_UP,
    ON_TIME,
    Cron,
    Every,
    ScheduleDef,
    ScheduleRecord,
    parse_spec,
    paused_timing,
    plan_ticks,
    saved_timing,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def minutes(count: float) -> datetime:
    return T0 + timedelta(minutes=count)


# -- parse_spec -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "normalized"),
    [
        ("*/5 * * * *", "*/5 * * * *"),
        ("0 3 * * 1-5", "0 3 * * 1-5"),
        ("  15,45   8-18 *  * *  ", "15,45 8-18 * * *"),
        ("0 0 1 jan *", "0 0 1 jan *"),
    ],
)
def test_good_cron_expressions_are_kept_normalized(expression: str, normalized: str) -> None:
    assert parse_spec(cron=expression) == Cron(normalized)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",  # four fields
        "0 * * * * *",  # six fields (seconds): not a five-field cron
        "61 * * * *",
        "* 25 * * *",
        "*/0 * * * *",
        "every 5 minutes",
        "@hourly",
    ],
)
def test_bad_cron_expressions_are_refused_naming_the_expression(expression: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_spec(cron=expression)
    message = str(caught.value)
    assert f"bad cron expression {expression!r}" in message
    assert "five fields" in message and "'*/5 * * * *'" in message


def test_cron_must_be_a_string() -> None:
    with pytest.raises(ConfigurationError, match=r"cron must be a string .*got 5"):
        parse_spec(cron=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("every", "seconds"),
    [(1, 1.0), (90, 90.0), (2.5, 2.5), (timedelta(minutes=5), 300.0), (timedelta(days=1), 86400.0)],
)
def test_every_takes_seconds_or_a_timedelta(every: Any, seconds: float) -> None:
    spec = parse_spec(every=every)
    assert spec == Every(seconds)
    assert isinstance(spec, Every) and isinstance(spec.seconds, float)


@pytest.mark.parametrize("every", [0, 0.5, -60, timedelta(0), timedelta(seconds=-1), float("nan")])
def test_every_must_be_at_least_a_second(every: Any) -> None:
    with pytest.raises(ConfigurationError, match="every must be at least 1 second"):
        parse_spec(every=every)


@pytest.mark.parametrize("every", ["5m", True, None.__class__, [60]])
def test_every_of_another_type_is_refused(every: Any) -> None:
    with pytest.raises(ConfigurationError, match="every must be seconds or a timedelta"):
        parse_spec(every=every)


@pytest.mark.parametrize(
    ("cron", "every"), [(None, None), ("*/5 * * * *", 60), ("*/5 * * * *", timedelta(minutes=5))]
)
def test_exactly_one_of_cron_and_every(cron: str | None, every: Any) -> None:
    with pytest.raises(ConfigurationError, match="exactly one of cron= or every="):
        parse_spec(cron=cron, every=every)


def test_describe() -> None:
    assert Cron("*/5 * * * *").describe() == "cron */5 * * * *"
    assert Every(300.0).describe() == "every 0:05:00"


# -- Every ------------------------------------------------------------------------------


def test_every_ticks_count_from_the_anchor() -> None:
    spec = Every(60.0)
    assert spec.next_after(T0, T0) == at(60)
    assert spec.next_after(at(0.000001), T0) == at(60)
    assert spec.next_after(at(59.999999), T0) == at(60)
    assert spec.next_after(at(60), T0) == at(120)  # strictly after
    assert spec.next_after(at(3601), T0) == at(3660)
    assert spec.next_after(at(-500), T0) == at(60)  # before the anchor: the first tick


def test_every_with_a_fractional_interval_stays_on_its_grid() -> None:
    spec = Every(2.5)
    tick, seen = T0, []
    for _ in range(8):
        tick = spec.next_after(tick, T0)
        seen.append(tick)
    assert seen == [at(2.5 * k) for k in range(1, 9)]


def test_every_latest_at_or_before() -> None:
    spec = Every(60.0)
    assert spec.latest_at_or_before(at(59.999999), T0) is None  # no tick yet
    assert spec.latest_at_or_before(T0, T0) is None  # the anchor itself is not a tick
    assert spec.latest_at_or_before(at(-30), T0) is None
    assert spec.latest_at_or_before(at(60), T0) == at(60)
    assert spec.latest_at_or_before(at(119.999999), T0) == at(60)
    assert spec.latest_at_or_before(at(120), T0) == at(120)
    assert spec.latest_at_or_before(at(86_400 * 365 + 1), T0) == at(86_400 * 365)


# -- Cron -------------------------------------------------------------------------------


def test_cron_next_after_is_strictly_after_and_in_utc() -> None:
    spec = Cron("*/5 * * * *")
    assert spec.next_after(T0, T0) == minutes(5)
    assert spec.next_after(minutes(4) + timedelta(seconds=59.999999), T0) == minutes(5)
    assert spec.next_after(T0 - timedelta(microseconds=1), T0) == T0
    nxt = spec.next_after(minutes(7), T0)
    assert nxt == minutes(10)
    assert nxt.utcoffset() == timedelta(0)


def test_cron_ignores_the_anchor() -> None:
    spec = Cron("0 3 * * *")
    assert spec.next_after(T0, at(-12345)) == spec.next_after(T0, at(99999)) == minutes(15 * 60)


def test_cron_from_another_timezone_is_the_same_instant() -> None:
    tokyo = timezone(timedelta(hours=9))
    spec = Cron("0 * * * *")
    local = T0.astimezone(tokyo) + timedelta(minutes=1)
    assert spec.next_after(local, T0) == minutes(60)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (T0, T0),  # a tick itself
        (T0 + timedelta(microseconds=1), T0),
        (minutes(2.5), T0),
        (minutes(4) + timedelta(seconds=59), T0),
        (minutes(5) - timedelta(microseconds=1), T0),  # the last instant before a tick
        (T0 - timedelta(microseconds=1), minutes(-5)),
        (minutes(5), minutes(5)),
    ],
)
def test_cron_latest_at_or_before(moment: datetime, expected: datetime) -> None:
    assert Cron("*/5 * * * *").latest_at_or_before(moment, T0) == expected


# -- plan_ticks -------------------------------------------------------------------------


def test_nothing_due_yet() -> None:
    plan = plan_ticks(Every(60.0), T0, at(60), at(59), "latest")
    assert (plan.fire, plan.missed, plan.next_due, plan.truncated) == ([], [], at(60), False)


@pytest.mark.parametrize("catch_up", ["latest", "all", "none"])
def test_one_due_tick_fires_under_every_policy(catch_up: Any) -> None:
    plan = plan_ticks(Every(60.0), T0, at(60), at(60.5), catch_up)
    assert (plan.fire, plan.missed, plan.next_due, plan.truncated) == ([at(60)], [], at(120), False)


def test_a_tick_due_exactly_now_fires() -> None:
    plan = plan_ticks(Cron("*/5 * * * *"), T0, minutes(5), minutes(5), "latest")
    assert (plan.fire, plan.next_due) == ([minutes(5)], minutes(10))


def test_catch_up_latest_fires_the_last_due_tick_and_misses_the_rest() -> None:
    plan = plan_ticks(Every(60.0), T0, at(60), at(330), "latest")
    assert plan.fire == [at(300)]
    assert plan.missed == [at(60), at(120), at(180), at(240)]
    assert (plan.next_due, plan.truncated) == (at(360), False)


def test_catch_up_all_fires_every_due_tick_in_order() -> None:
    plan = plan_ticks(Cron("*/5 * * * *"), T0, minutes(5), minutes(21), "all")
    assert plan.fire == [minutes(5), minutes(10), minutes(15), minutes(20)]
    assert (plan.missed, plan.next_due) == ([], minutes(25))


def test_catch_up_none_fires_only_a_tick_that_is_on_time() -> None:
    on_time = plan_ticks(
        Every(60.0), T0, at(60), at(300) + ON_TIME - timedelta(microseconds=1), "none"
    )
    assert on_time.fire == [at(300)]
    assert on_time.missed == [at(60), at(120), at(180), at(240)]

    late = plan_ticks(Every(600.0), T0, at(600), at(600) + ON_TIME, "none")
    assert late.fire == []
    assert late.missed == [at(600)]
    assert late.next_due == at(1200)


def test_catch_up_none_after_downtime_misses_everything_stale() -> None:
    plan = plan_ticks(Every(60.0), T0, at(60), at(240) + ON_TIME + timedelta(seconds=1), "none")
    # 300 is due and on time (1 s old); the ones before are stale.
    assert plan.fire == [at(300)]
    assert plan.missed == [at(60), at(120), at(180), at(240)]


@pytest.mark.parametrize("catch_up", ["latest", "all", "none"])
def test_every_due_tick_is_either_fired_or_missed_once(catch_up: Any) -> None:
    plan = plan_ticks(Every(7.0), T0, at(7), at(7 * 40 + 3), catch_up)
    handled = sorted(plan.fire + plan.missed)
    assert handled == [at(7 * k) for k in range(1, 41)]
    assert not set(plan.fire) & set(plan.missed)
    assert plan.next_due == at(7 * 41)


def test_plan_starts_from_next_due_not_from_the_anchor() -> None:
    # Ticks before next_due were handled already: they are neither fired nor missed again.
    plan = plan_ticks(Every(60.0), T0, at(240), at(250), "all")
    assert (plan.fire, plan.missed, plan.next_due) == ([at(240)], [], at(300))


@pytest.mark.parametrize("catch_up", ["latest", "all"])
def test_long_downtime_is_truncated_but_still_fires_the_latest_tick(catch_up: Any) -> None:
    now = at(5 * MAX_CATCH_UP + 2.5)  # 5,000 ticks of one second were due
    plan = plan_ticks(Every(1.0), T0, at(1), now, catch_up)
    assert plan.truncated
    handled = plan.fire + plan.missed
    assert len(handled) == MAX_CATCH_UP
    assert max(handled) == at(5 * MAX_CATCH_UP + 2)  # the latest due tick, not the 1000th
    assert plan.next_due == at(5 * MAX_CATCH_UP + 3)
    assert len(set(handled)) == len(handled)
    if catch_up == "latest":
        assert plan.fire == [at(5 * MAX_CATCH_UP + 2)]
    else:
        assert len(plan.fire) == MAX_CATCH_UP and plan.missed == []


def test_long_cron_downtime_just_before_a_tick_still_fires_the_latest() -> None:
    # Found by this test: the latest cron tick was lost when "now" was in the last second
    # before the next tick, and the plan fired a tick from the start of the downtime.
    now = minutes(MAX_CATCH_UP + 500) - timedelta(seconds=0.5)
    plan = plan_ticks(Cron("* * * * *"), T0, minutes(1), now, "latest")
    assert plan.truncated
    assert plan.fire == [minutes(MAX_CATCH_UP + 499)]
    assert plan.next_due == minutes(MAX_CATCH_UP + 500)


def test_exactly_max_catch_up_due_ticks_is_not_truncated() -> None:
    plan = plan_ticks(Every(1.0), T0, at(1), at(MAX_CATCH_UP), "all")
    assert not plan.truncated
    assert plan.fire == [at(k) for k in range(1, MAX_CATCH_UP + 1)]
    assert plan.next_due == at(MAX_CATCH_UP + 1)


# -- saved and paused timing ---------------------------------------------------------------


EVERY_MINUTE = Every(60.0)


def definition(spec: Cron | Every = EVERY_MINUTE, **changes: Any) -> ScheduleDef:
    return replace(ScheduleDef(name="kpi:42", task="kpi.refresh", spec=spec), **changes)


def record(
    spec: Cron | Every = EVERY_MINUTE, *, anchor: datetime, next_due: datetime, paused: bool = False
) -> ScheduleRecord:
    return ScheduleRecord(
        definition=definition(spec),
        paused=paused,
        anchor=anchor,
        next_due_at=next_due,
        last_due_at=None,
        last_job_id=None,
        created_at=anchor,
        updated_at=anchor,
    )


def test_a_new_schedule_counts_from_now() -> None:
    assert saved_timing(None, definition(), at(10)) == (at(10), at(70))
    assert saved_timing(None, definition(Cron("*/5 * * * *")), at(10)) == (at(10), minutes(5))


def test_saving_the_same_timing_again_keeps_the_schedules_place() -> None:
    existing = record(anchor=T0, next_due=at(180))
    changed_args = definition(args_json="[1]", skip_if_running=True)
    assert saved_timing(existing, changed_args, at(150)) == (T0, at(180))


def test_a_changed_timing_counts_from_now() -> None:
    existing = record(anchor=T0, next_due=at(180))
    assert saved_timing(existing, definition(Every(30.0)), at(150)) == (at(150), at(180))
    assert saved_timing(existing, definition(Cron("0 * * * *")), at(150)) == (at(150), minutes(60))


def test_resuming_starts_from_the_first_tick_after_now_on_the_anchor_grid() -> None:
    paused = record(anchor=T0, next_due=at(120), paused=True)
    assert paused_timing(paused, False, at(1000)) == at(1020)  # no catch-up of 120..960


def test_pausing_and_repeating_keep_next_due() -> None:
    running = record(anchor=T0, next_due=at(120))
    assert paused_timing(running, True, at(1000)) == at(120)
    assert paused_timing(running, False, at(1000)) == at(120)  # resume of a running one
    paused = record(anchor=T0, next_due=at(120), paused=True)
    assert paused_timing(paused, True, at(1000)) == at(120)  # pause again


# -- schedules declared on an App (no database is opened) ----------------------------------


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App(f"sqlite:///{tmp_path / 'never-opened.db'}")


def kpi_refresh(kpi_id: int, full: bool = False) -> int:
    return kpi_id


def test_periodic_registers_the_task_and_its_schedule(app: App, tmp_path: Path) -> None:
    task = app.periodic(
        every=timedelta(minutes=5), args=[42], ref=("kpi", 42), queue="kpis",
        retries=2,  # an option of the task it registers
    )(kpi_refresh)  # fmt: skip
    assert task.name == f"{__name__}.kpi_refresh"
    assert app.tasks[task.name] is task
    assert task.retry.max_attempts == 3
    [(name, schedule)] = app.periodics.items()
    assert name == task.name
    assert schedule == ScheduleDef(
        name=task.name,
        task=task.name,
        spec=Every(300.0),
        args_json="[42]",
        kwargs_json="{}",
        ref=Ref("kpi", "42"),
        queue="kpis",
        source="code",
    )
    assert not (tmp_path / "never-opened.db").exists()


def test_periodic_on_a_task_with_options_and_a_name(app: App) -> None:
    task = app.task(name="report", queue="reports", priority=3)(lambda day: day)
    returned = app.periodic(
        cron="0 6 * * *", name="report:daily", kwargs={"day": "today"}, catch_up="all"
    )(task)
    assert returned is task
    schedule = app.periodics["report:daily"]
    assert (schedule.task, schedule.cron, schedule.every_seconds) == ("report", "0 6 * * *", None)
    assert (schedule.kwargs_json, schedule.catch_up, schedule.queue) == (
        '{"day":"today"}',
        "all",
        None,
    )


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"cron": "60 * * * *"}, ConfigurationError, r"bad cron expression .60 \* \* \* \*."),
        ({}, ConfigurationError, "exactly one of cron= or every="),
        ({"every": 60, "cron": "* * * * *"}, ConfigurationError, "exactly one of cron= or every="),
        ({"every": 0}, ConfigurationError, "every must be at least 1 second"),
        ({"every": 60, "catch_up": "some"}, ConfigurationError, "catch_up must be one of latest, all, none, got 'some'"),
        ({"every": 60, "name": "bad name!"}, ConfigurationError, "invalid schedule name 'bad name!'"),
        ({"every": 60, "args": [1, 2, 3]}, InvalidArguments, "too many positional arguments"),
        ({"every": 60, "args": "42"}, InvalidArguments, "args of schedule .* must be a list or tuple"),
        ({"every": 60, "kwargs": {"nope": 1}}, InvalidArguments, "unexpected keyword argument 'nope'"),
        ({"every": 60, "args": [{1}]}, Exception, r"is a set"),
        ({"every": 60, "args": [1], "ref": "no-colon"}, InvalidArguments, "ref must look like 'type:id'"),
    ],
)  # fmt: skip
def test_periodic_with_bad_options_is_refused_and_registers_nothing(
    app: App, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    task = app.task(name="kpi.refresh")(lambda kpi_id=1: kpi_id)
    with pytest.raises(error, match=message):
        app.periodic(**options)(task)
    assert app.periodics == {}


def test_adding_a_schedule_for_an_unknown_task_names_it(app: App) -> None:
    with pytest.raises(UnknownTask, match="unknown task 'nope'"):
        app.schedules.add("x", "nope", every=60)


def test_the_job_a_schedule_fires(app: App) -> None:
    task = app.task(name="kpi.refresh", queue="kpis", priority=2, retries=2, lock="ref")(
        lambda kpi_id, full=False: kpi_id
    )
    app.periodic(every=60, args=[7], kwargs={"full": True}, ref=("kpi", 7), priority=9)(task)
    saved = record(anchor=T0, next_due=at(60))
    stored = replace(saved, definition=app.periodics["kpi.refresh"])
    job = app._schedule_job(stored, at(60))
    assert job is not None
    assert (job.task, job.queue, job.priority, job.max_attempts) == ("kpi.refresh", "kpis", 9, 3)
    assert (json.loads(job.args_json), json.loads(job.kwargs_json)) == ([7], {"full": True})
    assert (job.ref, job.lock_key) == (Ref("kpi", "7"), "kpi:7")
    # A process that does not know the task leaves the schedule to one that does.
    unknown = replace(stored, definition=replace(stored.definition, task="other.task"))
    assert app._schedule_job(unknown, at(60)) is None


# -- unique and lock keys of Task.prepare --------------------------------------------------


def refresh_kpi(kpi_id: int, period: str = "day", *, full: bool = False) -> int:
    return kpi_id


def test_no_keys_by_default(app: App) -> None:
    job = app.task(refresh_kpi).prepare(1, ref=("kpi", 1))
    assert (job.unique_key, job.lock_key) == (None, None)


def test_unique_true_keys_on_task_ref_and_arguments(app: App) -> None:
    task = app.task(name="kpi.refresh", unique=True)(refresh_kpi)
    first = task.prepare(1, ref=("kpi", 1)).unique_key
    assert first is not None and first.startswith("kpi.refresh:kpi:1:")
    assert task.prepare(1, ref=("kpi", 1)).unique_key == first
    others = {
        task.prepare(2, ref=("kpi", 1)).unique_key,
        task.prepare(1, ref=("kpi", 2)).unique_key,
        task.prepare(1, "week", ref=("kpi", 1)).unique_key,
        task.prepare(1, full=True, ref=("kpi", 1)).unique_key,
        task.prepare(1).unique_key,
    }
    assert first not in others and len(others) == 5
    assert task.prepare(1).unique_key.startswith("kpi.refresh::")  # type: ignore[union-attr]
    # Options are not arguments: another queue or priority is the same job.
    assert task.prepare(1, ref=("kpi", 1), queue="other", priority=4).unique_key == first


def test_unique_ref_keys_on_task_and_ref_only(app: App) -> None:
    task = app.task(name="kpi.refresh", unique="ref")(refresh_kpi)
    assert task.prepare(1, ref=("kpi", 1)).unique_key == "kpi.refresh:kpi:1"
    assert task.prepare(99, "week", ref=("kpi", 1)).unique_key == "kpi.refresh:kpi:1"
    assert task.prepare(1, ref="kpi:2").unique_key == "kpi.refresh:kpi:2"


def test_unique_template_uses_task_ref_and_parameters(app: App) -> None:
    task = app.task(name="kpi.refresh", unique="{task}/{kpi_id}/{period}/{full}")(refresh_kpi)
    assert task.prepare(5, "week", full=True).unique_key == "kpi.refresh/5/week/True"


def test_templates_see_parameters_left_at_their_defaults(app: App) -> None:
    # Found by this test: a parameter not passed (left at its default) was "not a
    # parameter" for the template.
    task = app.task(name="kpi.refresh", unique="{kpi_id}:{period}", lock="{kpi_id}:{full}")(
        refresh_kpi
    )
    job = task.prepare(5)
    assert (job.unique_key, job.lock_key) == ("5:day", "5:False")
    assert task.prepare(kpi_id=5, period="day").unique_key == job.unique_key


def test_lock_ref_is_the_ref(app: App) -> None:
    task = app.task(name="kpi.refresh", lock="ref")(refresh_kpi)
    assert task.prepare(1, ref=("kpi", 42)).lock_key == "kpi:42"
    assert task.prepare(2, ref=("kpi", 42)).lock_key == "kpi:42"  # one lock per object


def test_lock_template(app: App) -> None:
    task = app.task(name="kpi.refresh", lock="kpi:{kpi_id}")(refresh_kpi)
    assert task.prepare(42).lock_key == "kpi:42"
    assert task.prepare(42, ref=("website", 1)).lock_key == "kpi:42"
    both = app.task(name="both", unique="ref", lock="{ref.type}")(refresh_kpi)
    job = both.prepare(1, ref=("kpi", 42))
    assert (job.unique_key, job.lock_key) == ("both:kpi:42", "kpi")


@pytest.mark.parametrize(
    ("option", "template"),
    [("unique", "ref"), ("unique", "{task}:{ref}"), ("lock", "ref"), ("lock", "x:{ref}"), ("lock", "{ref.id}")],
)  # fmt: skip
def test_a_key_that_needs_the_ref_says_so(app: App, option: str, template: str) -> None:
    task = app.task(name="kpi.refresh", **{option: template})(refresh_kpi)
    with pytest.raises(InvalidArguments) as caught:
        task.prepare(1)
    message = str(caught.value)
    assert f"{option}=" in message and "needs the job's ref" in message
    assert "ref=(type, id)" in message


@pytest.mark.parametrize("option", ["unique", "lock"])
def test_an_unknown_field_in_a_key_template_is_named(app: App, option: str) -> None:
    task = app.task(name="kpi.refresh", **{option: "kpi:{kpi}"})(refresh_kpi)
    with pytest.raises(InvalidArguments) as caught:
        task.prepare(1, ref=("kpi", 1))
    message = str(caught.value)
    assert f"cannot build the {option} key of kpi.refresh from 'kpi:{{kpi}}'" in message
    assert "'kpi' is not task, ref or one of its parameters" in message
    assert "KeyError" not in message


@pytest.mark.parametrize("template", ["{", "{0}", "{kpi_id.nope}"])
def test_a_broken_key_template_is_refused_with_the_reason(app: App, template: str) -> None:
    task = app.task(name="kpi.refresh", lock=template)(refresh_kpi)
    with pytest.raises(InvalidArguments, match=r"cannot build the lock key of kpi\.refresh"):
        task.prepare(1)


def test_a_key_that_is_empty_or_too_long_is_refused(app: App) -> None:
    empty = app.task(name="empty", lock="{period}")(refresh_kpi)
    with pytest.raises(InvalidArguments, match="lock key of empty must be 1 to 500 characters"):
        empty.prepare(1, "")
    with pytest.raises(InvalidArguments, match="must be 1 to 500 characters"):
        empty.prepare(1, "x" * 501)
    assert empty.prepare(1, "x" * 500).lock_key == "x" * 500


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique": ""}, "unique of task 'x' must be True, 'ref' or a key template"),
        ({"unique": 5}, "unique of task 'x' must be True, 'ref' or a key template"),
        ({"lock": ""}, "lock of task 'x' must be 'ref' or a key template"),
        ({"lock": True}, "lock of task 'x' must be 'ref' or a key template"),
    ],
)
def test_bad_unique_or_lock_options_are_refused_at_registration(
    app: App, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        app.task(name="x", **options)(refresh_kpi)
    assert app.tasks == {}


def test_concurrency_is_a_limit_per_task_or_per_key_in_its_own_key_space(app: App) -> None:
    whole = app.task(name="crm.sync", concurrency=4)(refresh_kpi)
    job = whole.prepare(1, ref=("website", 3))
    assert (job.lock_key, job.lock_limit) == ("concurrency:crm.sync", 4)
    per_type = app.task(name="api.fetch", concurrency=10, concurrency_key="{ref.type}")(refresh_kpi)
    job = per_type.prepare(1, ref=("website", 3))
    assert (job.lock_key, job.lock_limit) == ("concurrency:api.fetch:website", 10)
    # the limit of one is a lock: stored as one (None), in the task's own key space
    one = app.task(name="one.at.a.time", concurrency=1, concurrency_key="{kpi_id}")(refresh_kpi)
    assert (one.prepare(7).lock_key, one.prepare(7).lock_limit) == (
        "concurrency:one.at.a.time:7",
        None,
    )
    assert app.task(name="plain")(refresh_kpi).prepare(1).lock_limit is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency of task 'x' must be a whole number from 1 to 10000"),
        ({"concurrency": 2.5}, "concurrency of task 'x' must be a whole number"),
        ({"concurrency": True}, "concurrency of task 'x' must be a whole number"),
        ({"concurrency": 10_001}, "from 1 to 10000, got 10001"),
        ({"concurrency_key": "{ref}"}, "concurrency_key needs concurrency"),
        ({"concurrency": 2, "concurrency_key": ""}, "concurrency_key of task 'x' must be a key"),
        ({"concurrency": 2, "lock": "ref"}, "lock= is concurrency=1 with concurrency_key="),
    ],
)
def test_bad_concurrency_options_are_refused_at_registration(
    app: App, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        app.task(name="x", **options)(refresh_kpi)
    assert app.tasks == {}


def test_a_concurrency_key_that_needs_the_ref_says_so(app: App) -> None:
    task = app.task(name="api.fetch", concurrency=3, concurrency_key="{ref}")(refresh_kpi)
    with pytest.raises(InvalidArguments, match=r"concurrency_key=.*needs the job's ref"):
        task.prepare(1)


def test_a_rate_is_jobs_per_window_per_task_or_per_key(app: App) -> None:
    per_second = app.task(name="site.fetch", rate="10/s")(refresh_kpi)
    job = per_second.prepare(1)
    assert (job.rate_key, job.rate_limit, job.rate_window) == ("rate:site.fetch", 10, 1.0)
    per_site = app.task(name="crawl", rate="5/10s", rate_key="{ref.id}")(refresh_kpi)
    job = per_site.prepare(1, ref=("site", "example.org"))
    assert (job.rate_key, job.rate_limit, job.rate_window) == ("rate:crawl:example.org", 5, 10.0)
    assert app.task(name="hourly", rate="1000/h")(refresh_kpi).prepare(1).rate_window == 3600.0
    assert app.task(name="plain")(refresh_kpi).prepare(1).rate_key is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": "10"}, "rate of task 'x' must look like '10/s'"),
        ({"rate": "ten/s"}, "must look like '10/s'"),
        ({"rate": "10/d"}, "must look like '10/s'"),
        ({"rate": 10}, "must look like '10/s'"),
        ({"rate": "0/s"}, "1 to 10000 jobs per window of at most a day, got '0/s'"),
        ({"rate": "5/25h"}, "per window of at most a day"),
        ({"rate_key": "{ref}"}, "rate_key needs rate"),
        ({"rate": "1/s", "rate_key": ""}, "rate_key of task 'x' must be a key template"),
    ],
)
def test_bad_rate_options_are_refused_at_registration(
    app: App, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        app.task(name="x", **options)(refresh_kpi)
    assert app.tasks == {}
