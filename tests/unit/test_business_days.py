"""Schedules on business days: which ticks a calendar keeps (public holidays from the
holidays package, weekends, the user's closed days; every business day, or the first or
last of the month), and bad calendars refused with the reason."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from tasktrail.business_days import Calendar
from tasktrail.errors import ConfigurationError
from tasktrail.schedule import Cron, Every, OnCalendar, parse_spec, spec_from_columns

UTC = timezone.utc


def ticks(spec, start: datetime, count: int) -> list[datetime]:
    found, moment = [], start
    for _ in range(count):
        moment = spec.next_after(moment, start)
        found.append(moment)
    return found


def test_a_daily_cron_on_german_business_days_skips_weekends_and_holidays() -> None:
    spec = parse_spec(cron="0 18 * * *", calendar="DE")
    assert isinstance(spec, OnCalendar)
    # from Wednesday 23 December 2026: 24th (Thu) and 28th-31st; the 25th and 26th are
    # public holidays, 26th-27th a weekend too; 1 January a holiday, then Monday the 4th
    days = [t.date() for t in ticks(spec, datetime(2026, 12, 23, 19, tzinfo=UTC), 7)]
    assert days == [
        date(2026, 12, 24), date(2026, 12, 28), date(2026, 12, 29), date(2026, 12, 30),
        date(2026, 12, 31), date(2027, 1, 4), date(2027, 1, 5),
    ]  # fmt: skip
    assert all(
        t.hour == 18 and t.minute == 0 for t in ticks(spec, datetime(2026, 12, 23, tzinfo=UTC), 3)
    )


def test_a_region_has_its_own_holidays() -> None:
    # 6 January (Epiphany) is a holiday in Bavaria, not in Berlin
    bavaria = parse_spec(cron="0 9 * * *", calendar="DE-BY")
    berlin = parse_spec(cron="0 9 * * *", calendar="de-be")
    start = datetime(2027, 1, 5, 10, tzinfo=UTC)
    assert bavaria.next_after(start, start).date() == date(2027, 1, 7)
    assert berlin.next_after(start, start).date() == date(2027, 1, 6)


def test_first_and_last_business_day_of_the_month_and_closed_days() -> None:
    start = datetime(2026, 11, 15, tzinfo=UTC)
    last = parse_spec(cron="0 18 * * *", calendar="DE", calendar_rule="last_business_day")
    assert [t.date() for t in ticks(last, start, 3)] == [
        date(2026, 11, 30), date(2026, 12, 31), date(2027, 1, 29),
    ]  # fmt: skip
    closed = parse_spec(
        cron="0 18 * * *", calendar="DE", calendar_rule="last_business_day",
        closed_days=["2026-12-31", date(2026, 12, 30)],
    )  # fmt: skip
    assert closed.next_after(datetime(2026, 12, 1, tzinfo=UTC), start).date() == date(2026, 12, 29)
    first = parse_spec(cron="0 6 * * *", calendar="DE", calendar_rule="first_business_day")
    assert [t.date() for t in ticks(first, start, 3)] == [
        date(2026, 12, 1), date(2027, 1, 4), date(2027, 2, 1),
    ]  # fmt: skip


def test_the_latest_kept_tick_before_a_moment_skips_the_days_not_kept() -> None:
    spec = parse_spec(cron="0 18 * * *", calendar="DE")
    sunday = datetime(2026, 12, 27, 20, tzinfo=UTC)
    assert spec.latest_at_or_before(sunday, sunday) == datetime(2026, 12, 24, 18, tzinfo=UTC)


def test_an_interval_schedule_can_follow_a_calendar_too() -> None:
    spec = parse_spec(every=timedelta(hours=8), calendar="DE")
    anchor = datetime(2026, 12, 24, 0, tzinfo=UTC)
    assert [(t.day, t.hour) for t in ticks(spec, anchor, 6)] == [
        (24, 8), (24, 16), (28, 0), (28, 8), (28, 16), (29, 0),
    ]  # fmt: skip


def test_a_calendar_is_stored_as_json_and_read_back_equal() -> None:
    spec = parse_spec(
        cron="0 18 * * *", calendar="DE-BY", calendar_rule="first_business_day",
        closed_days=["2027-03-01"],
    )  # fmt: skip
    assert isinstance(spec, OnCalendar)
    assert spec_from_columns("0 18 * * *", None, spec.calendar.to_json()) == spec
    assert spec_from_columns(None, 60.0, None) == Every(60.0)
    assert spec.calendar == Calendar("DE", "BY", "first_business_day", ("2027-03-01",))
    assert "first business day of DE-BY" in spec.describe()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"calendar": "XX"}, "unknown calendar country 'XX'"),
        ({"calendar": "DE-ZZ"}, "unknown subdivision 'ZZ' of DE"),
        ({"calendar": ""}, "calendar must be a country code"),
        ({"calendar": "DE", "calendar_rule": "weekly"}, "calendar rule must be one of"),
        (
            {"calendar": "DE", "closed_days": ["24.12.2026"]},
            "closed day '24.12.2026' is not a date",
        ),
        ({"calendar_rule": "last_business_day"}, "need a calendar="),
    ],
)
def test_a_bad_calendar_is_refused_with_the_reason(options: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_spec(cron="0 18 * * *", **options)


def test_a_rule_that_never_comes_due_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="has no tick"):
        parse_spec(cron="0 18 * * 6", calendar="DE")  # Saturdays only: never a business day


def test_cron_is_still_what_it_was() -> None:
    assert parse_spec(cron="0 18 * * *") == Cron("0 18 * * *")
