"""Business-day schedules from the command line: `schedules add --calendar …` stores the
rule, and `schedules list` shows the next due times so a user can check it."""

from __future__ import annotations

import json
from datetime import date

import tasktrail

from .test_worker_control import tt

APP = "tests.integration.tasks:app"


def test_a_schedule_on_the_last_business_day_shows_its_next_due_times(
    app: tasktrail.App, worker_dsn: str
) -> None:
    out = tt(
        worker_dsn, "schedules", "add", "month-end", "noop", "--app", APP, "--cron", "0 18 * * *",
        "--calendar", "DE-BY", "--calendar-rule", "last_business_day",
        "--closed-days", "2030-12-31",
    )  # fmt: skip
    assert out.startswith("schedule month-end: cron 0 18 * * *, last business day of DE-BY")
    [listed] = json.loads(tt(worker_dsn, "schedules", "list", "--json"))
    assert listed["calendar"] == {
        "country": "DE", "subdivision": "BY", "rule": "last_business_day",
        "closed": ["2030-12-31"],
    }  # fmt: skip
    upcoming = [date.fromisoformat(moment[:10]) for moment in listed["upcoming"]]
    assert len(upcoming) == 3
    for day in upcoming:
        # a weekday, with none after it in its month (no holiday falls on a month's last
        # weekdays in Bavaria; 2030-12-31 is closed by the schedule)
        later = [date.fromordinal(day.toordinal() + n) for n in range(1, 7)]
        assert day.weekday() < 5, day
        assert not [
            d for d in later if d.month == day.month and d.weekday() < 5 and d != date(2030, 12, 31)
        ], day
    table = tt(worker_dsn, "schedules", "list")
    assert "last business day of DE-BY" in table
    assert upcoming[1].isoformat() in table  # the "then" column


def test_a_bad_calendar_is_one_clear_line(app: tasktrail.App, worker_dsn: str) -> None:
    import os
    import subprocess

    from .conftest import REPO_ROOT, tasktrail_command

    done = subprocess.run(
        [tasktrail_command(), "schedules", "add", "x", "noop", "--app", APP, "--cron",
         "0 18 * * *", "--calendar", "XX"],
        cwd=REPO_ROOT, env={**os.environ, "TASKTRAIL_DSN": worker_dsn}, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "unknown calendar country 'XX'" in done.stderr
    assert tasktrail.App(worker_dsn).schedules.list() == []
