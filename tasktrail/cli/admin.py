"""Commands about the system: ``stats``, ``schema``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from ..backends import open_backend, setup_sql
from ..clock import parse_duration, utcnow
from ..config import PostgresDsn, parse_dsn, resolve_dsn
from ..errors import InvalidArguments
from . import AppContext, cli, common_options, json_option, parse_window
from .output import echo_json, print_table


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.1f}ms"
    return f"{value:.2f}s"


@cli.command("stats")
@common_options
@click.option(
    "--window", default="1h", show_default=True, help="Look back this long (15m, 1h, 7d)."
)
@json_option
def stats_command(ctx: AppContext, window: str, as_json: bool) -> None:
    """Per task: jobs by status, run and wait time percentiles, failure rate, throughput.

    Queued, reserved and running counts are as of now; final counts, waits, the failure
    rate and the throughput cover jobs that finished within the window. Run times are
    those of the attempts that ended in their child within the window (succeeded, failed,
    timeout), from start to end; an attempt lost with its worker is not a run. The
    throughput is per active minute: jobs finished divided by the clock minutes in which
    any of them finished.
    """
    stats = ctx.reader().stats(parse_window(window))
    if as_json:
        echo_json([item.to_dict() for item in stats])
        return
    rows: list[dict[str, Any]] = []
    for item in stats:
        rows.append(
            {
                **item.counts,
                "task": item.task,
                "failure_rate": "" if item.failure_rate is None else f"{item.failure_rate:.1%}",
                "run": f"{_seconds(item.run_p50)} / {_seconds(item.run_p95)}",
                "wait": f"{_seconds(item.wait_p50)} / {_seconds(item.wait_p95)}",
                "throughput": f"{item.throughput_per_active_minute:.1f}",
            }
        )
    print_table(
        rows,
        [
            ("task", "task"),
            ("queued", "queued"),
            ("reserved", "reserved"),
            ("running", "running"),
            ("succeeded", "succeeded"),
            ("failed", "failed"),
            ("cancelled", "cancelled"),
            ("failure_rate", "failure rate"),
            ("run", "run p50 / p95"),
            ("wait", "wait p50 / p95"),
            ("throughput", "jobs / active min"),
        ],
        title=f"tasks, last {window}",
    )


@cli.command("schema")
@common_options
@click.option(
    "--roles",
    is_flag=True,
    help="Print the least-privilege roles script instead (PostgreSQL: owner, worker, "
    "producer; see docs/security.md), for the DSN's schema.",
)
def schema_command(ctx: AppContext, roles: bool) -> None:
    """Print the setup SQL for the DSN's database (run it with psql -f or sqlite3).

    Nothing is connected to or changed.
    """
    if ctx.app_spec:
        app = ctx.app()
        parsed = parse_dsn(app.dsn, app._schema)
    else:
        parsed = parse_dsn(resolve_dsn(ctx.dsn), ctx.schema)
    if not roles:
        click.echo(setup_sql(parsed))
        return
    if not isinstance(parsed, PostgresDsn):
        raise InvalidArguments(
            "--roles is for PostgreSQL (a SQLite file has no roles: its file permissions "
            "are the access control); give --dsn postgresql://…"
        )
    from ..backends.postgres.sql import render_roles

    click.echo(render_roles(parsed.schema))


@cli.command("migrate")
@common_options
def migrate_command(ctx: AppContext) -> None:
    """Create the schema or apply pending migrations (idempotent; safe on many hosts)."""
    app = ctx.app()
    backend = open_backend(parse_dsn(app.dsn, app._schema))
    try:
        applied = backend.migrate()
    finally:
        backend.close()
    if applied:
        click.echo(f"applied migrations {', '.join(map(str, applied))} to {app.url}")
    else:
        click.echo(f"schema at {app.url} is up to date")


def _retention(text: str, option: str) -> timedelta | None:
    if text.strip().lower() == "never":
        return None
    try:
        return parse_duration(text)
    except InvalidArguments as exc:
        raise InvalidArguments(f"{option}: {exc}") from None


@cli.command("maintain")
@common_options
@click.option(
    "--keep-succeeded",
    default="7d",
    show_default=True,
    help="Retention of succeeded jobs ('never' keeps them).",
)
@click.option("--keep-failed", default="30d", show_default=True, help="Retention of failed jobs.")
@click.option(
    "--keep-cancelled", default="30d", show_default=True, help="Retention of cancelled jobs."
)
@json_option
def maintain_command(
    ctx: AppContext, keep_succeeded: str, keep_failed: str, keep_cancelled: str, as_json: bool
) -> None:
    """Recover the jobs of lost workers, then prune old finished jobs and their history.

    With them go the schedules' ledger rows of the jobs pruned (or otherwise gone); ledger
    rows without a job (skipped, missed) and workers stopped or lost, that hold no job,
    are kept as long as the longest of the three retentions ('never' for one: forever).
    Safe to run from cron on several hosts at once.
    """
    keep = {
        status: _retention(value, f"--keep-{status}")
        for status, value in (
            ("succeeded", keep_succeeded),
            ("failed", keep_failed),
            ("cancelled", keep_cancelled),
        )
    }
    backend = ctx.reader().backend
    now = utcnow()
    recovered = backend.recover_lost(now=now)
    report = backend.prune(
        older_than={status: age for status, age in keep.items() if age is not None}, now=now
    )
    lost_workers = sorted({item.worker_id for item in recovered})
    if as_json:
        echo_json(
            {
                "recovered": [
                    {
                        "job_id": r.job_id,
                        "worker_id": r.worker_id,
                        "was": r.previous_status,
                        "now": r.new_status,
                    }
                    for r in recovered
                ],
                "lost_workers": lost_workers,
                "pruned_jobs": report.jobs,
                "pruned_events": report.events,
                "pruned_schedule_ticks": report.schedule_ticks,
                "pruned_workers": report.workers,
            }
        )
        return
    click.echo(
        f"recovered {len(recovered)} jobs from {len(lost_workers)} lost workers"
        + (f" ({', '.join(map(str, lost_workers))})" if lost_workers else "")
    )
    pruned = ", ".join(f"{count} {status}" for status, count in report.jobs.items()) or "no"
    click.echo(
        f"pruned {pruned} jobs, {report.events} events, {report.schedule_ticks} schedule "
        f"ledger rows and {report.workers} stopped or lost workers"
    )
