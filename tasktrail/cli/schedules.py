"""``tasktrail schedules …``: periodic jobs stored in the database."""

from __future__ import annotations

from typing import Any

import click

from ..business_days import RULES
from ..clock import parse_duration
from ..schedule import CATCH_UP_POLICIES, ScheduleRecord
from . import AppContext, cli, common_options, json_option
from .jobs import json_value
from .output import echo_json, print_table, short_time


@cli.group("schedules")
def schedules_group() -> None:
    """Periodic jobs: list, add, pause, resume, remove, and their tick ledger."""


def _row(record: ScheduleRecord) -> dict[str, Any]:
    d = record.definition
    return {
        "name": d.name,
        "task": d.task,
        "when": (f"cron {d.cron}" if d.cron else f"every {d.every_seconds:g}s")
        + (f", {d.calendar.describe()}" if d.calendar else ""),
        "ref": str(d.ref) if d.ref else "",
        "args": d.args_json if d.args_json != "[]" else "",
        "catch_up": d.catch_up,
        "skip": "yes" if d.skip_if_running else "",
        "source": d.source,
        "state": "paused" if record.paused else "active",
        "next_due_at": short_time(record.next_due_at),
        "upcoming": ", ".join(short_time(moment) for moment in record.upcoming()[1:]),
        "last_job_id": record.last_job_id or "",
    }


def _print(records: list[ScheduleRecord], as_json: bool) -> None:
    if as_json:
        echo_json([record.to_dict() for record in records])
        return
    print_table(
        [_row(record) for record in records],
        [
            ("name", "name"), ("task", "task"), ("when", "when (UTC)"), ("ref", "ref"),
            ("args", "args"), ("catch_up", "catch up"), ("skip", "skip if running"),
            ("source", "source"), ("state", "state"), ("next_due_at", "next due (UTC)"),
            ("upcoming", "then"), ("last_job_id", "last job"),
        ],
    )  # fmt: skip


@schedules_group.command("list")
@common_options
@json_option
def list_command(ctx: AppContext, as_json: bool) -> None:
    """Every schedule."""
    _print(ctx.reader().schedules.list(), as_json)


@schedules_group.command("add")
@common_options
@click.argument("name")
@click.argument("task_name")
@click.option("--cron", help="Five-field cron expression, UTC: '*/5 * * * *'.")
@click.option("--every", help="Interval: 30s, 5m, 1h.")
@click.option("--args", "args_json", metavar="JSON", help="Positional arguments, a JSON array.")
@click.option("--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments, a JSON object.")
@click.option("--ref", help="Business object, type:id.")
@click.option("--queue", help="Overrides the task's queue.")
@click.option("--priority", type=int, help="Overrides the task's priority.")
@click.option(
    "--catch-up",
    type=click.Choice(CATCH_UP_POLICIES),
    default="latest",
    show_default=True,
    help="Missed ticks after downtime: fire the latest, all, or none.",
)
@click.option("--skip-if-running", is_flag=True, help="Skip a tick while the previous job runs.")
@click.option("--replace", is_flag=True, help="Overwrite a schedule of the same name.")
@click.option(
    "--calendar",
    metavar="COUNTRY[-REGION]",
    help="Only on business days there: DE, DE-BY, US-NY (weekends and public holidays off).",
)
@click.option(
    "--calendar-rule",
    type=click.Choice(RULES),
    default="business_days",
    show_default=True,
    help="With --calendar: every business day, or the first or last of each month.",
)
@click.option(
    "--closed-days",
    metavar="DATES",
    default="",
    help="With --calendar: more closed days, comma-separated YYYY-MM-DD.",
)
@json_option
def add_command(
    ctx: AppContext,
    name: str,
    task_name: str,
    cron: str | None,
    every: str | None,
    args_json: str | None,
    kwargs_json: str | None,
    ref: str | None,
    queue: str | None,
    priority: int | None,
    catch_up: str,
    skip_if_running: bool,
    replace: bool,
    calendar: str | None,
    calendar_rule: str,
    closed_days: str,
    as_json: bool,
) -> None:
    """Add a schedule NAME running TASK_NAME (needs --app). `schedules list` shows its
    next due times, to check the rule."""
    app = ctx.app(need_tasks=True)
    record = app.schedules.add(
        name,
        task_name,
        cron=cron,
        every=parse_duration(every) if every is not None else None,
        args=json_value(args_json, "--args", list),
        kwargs=json_value(kwargs_json, "--kwargs", dict),
        ref=ref,
        queue=queue,
        priority=priority,
        catch_up=catch_up,
        skip_if_running=skip_if_running,
        replace=replace,
        calendar=calendar,
        calendar_rule=calendar_rule,
        closed_days=[day.strip() for day in closed_days.split(",") if day.strip()],
    )
    if as_json:
        echo_json(record.to_dict())
    else:
        click.echo(
            f"schedule {record.name}: {_row(record)['when']}, next due "
            f"{short_time(record.next_due_at)} UTC, then "
            + ", ".join(short_time(moment) for moment in record.upcoming()[1:])
        )


def _change(ctx: AppContext, names: tuple[str, ...], verb: str, as_json: bool) -> None:
    schedules = ctx.reader().schedules
    before = [schedules.get(name) for name in names]  # one unknown name changes nothing
    changed: list[ScheduleRecord] = []
    for record in before:
        if verb == "removed":
            schedules.remove(record.name)
            changed.append(record)
        elif verb == "paused":
            changed.append(schedules.pause(record.name))
        else:
            changed.append(schedules.resume(record.name))
    if as_json:
        echo_json([record.to_dict() for record in changed])
    else:
        for record in changed:
            click.echo(f"schedule {record.name} {verb}")


@schedules_group.command("pause")
@common_options
@click.argument("names", nargs=-1, required=True)
@json_option
def pause_command(ctx: AppContext, names: tuple[str, ...], as_json: bool) -> None:
    """Pause schedules (their ticks are not fired, nor caught up later)."""
    _change(ctx, names, "paused", as_json)


@schedules_group.command("resume")
@common_options
@click.argument("names", nargs=-1, required=True)
@json_option
def resume_command(ctx: AppContext, names: tuple[str, ...], as_json: bool) -> None:
    """Resume paused schedules from their next due time."""
    _change(ctx, names, "resumed", as_json)


@schedules_group.command("remove")
@common_options
@click.argument("names", nargs=-1, required=True)
@json_option
def remove_command(ctx: AppContext, names: tuple[str, ...], as_json: bool) -> None:
    """Delete schedules (their ledger stays)."""
    _change(ctx, names, "removed", as_json)


@schedules_group.command("ticks")
@common_options
@click.argument("name")
@click.option("--limit", type=int, default=50, show_default=True, help="0 for all.")
@json_option
def ticks_command(ctx: AppContext, name: str, limit: int, as_json: bool) -> None:
    """The ledger of a schedule: every due time, fired (with its job), skipped or missed."""
    if limit < 0:
        raise click.ClickException(f"--limit must be 0 (all) or more, got {limit}")
    ticks = ctx.reader().schedules.ticks(name, limit=limit or None)
    if as_json:
        echo_json([tick.to_dict() for tick in ticks])
        return
    rows = [
        {
            "due_at": short_time(tick.due_at),
            "outcome": tick.outcome,
            "job_id": tick.job_id or "",
            "reason": tick.reason or "",
            "recorded_at": short_time(tick.recorded_at),
            "worker_id": tick.worker_id or "",
        }
        for tick in ticks
    ]
    print_table(
        rows,
        [
            ("due_at", "due (UTC)"), ("outcome", "outcome"), ("job_id", "job"),
            ("reason", "reason"), ("recorded_at", "recorded (UTC)"), ("worker_id", "worker"),
        ],
        title=f"schedule {name}",
    )  # fmt: skip
