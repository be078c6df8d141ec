"""Commands about running workers and queues: ``workers`` (and ``workers scale``),
``queues list | pause | resume``."""

from __future__ import annotations

import click

from ..errors import InvalidArguments
from ..job import WorkerRecord
from . import AppContext, cli, common_options, json_option
from .output import echo_json, print_table, short_time


def _processes(worker: WorkerRecord) -> str:
    """What it runs, and what it was asked to run and has not reached yet."""
    wanted = worker.requested_processes
    if wanted is None or wanted == worker.processes or worker.status != "running":
        return str(worker.processes)
    return f"{worker.processes} -> {wanted}"


def _autoscale(worker: WorkerRecord) -> str:
    if worker.autoscale_min is None or worker.autoscale_max is None:
        return ""
    return f"{worker.autoscale_min}-{worker.autoscale_max}"


@cli.group("workers", invoke_without_command=True)
@common_options
@click.option("--all", "include_stopped", is_flag=True, help="Include stopped and lost workers.")
@click.option("--limit", type=int, default=50, show_default=True, help="0 for all.")
@json_option
@click.pass_context
def workers_group(
    click_ctx: click.Context,
    ctx: AppContext,
    include_stopped: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Registered worker clients (running ones unless --all); `workers scale` changes one.

    The processes column shows "3 -> 5" while a worker has been asked for 5 and runs 3.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    if limit < 0:
        # Like ``jobs --limit -1``: one line on stderr, not a usage screen.
        raise InvalidArguments(f"--limit must be 0 (all) or more, got {limit}")
    workers = ctx.reader().workers(include_stopped=include_stopped, limit=limit or None)
    if as_json:
        echo_json([worker.to_dict() for worker in workers])
        return
    rows = [
        {
            **worker.to_dict(),
            "processes": _processes(worker),
            "autoscale": _autoscale(worker),
            "queues": ",".join(worker.queues) or "all",
            "started_at": short_time(worker.started_at),
            "heartbeat_at": short_time(worker.heartbeat_at),
            "stopped_at": short_time(worker.stopped_at),
        }
        for worker in workers
    ]
    print_table(
        rows,
        [
            ("id", "id"),
            ("name", "name"),
            ("host", "host"),
            ("pid", "pid"),
            ("processes", "processes"),
            ("autoscale", "autoscale"),
            ("reserve", "reserve"),
            ("queues", "queues"),
            ("status", "status"),
            ("started_at", "started (UTC)"),
            ("heartbeat_at", "heartbeat (UTC)"),
            ("stopped_at", "stopped (UTC)"),
        ],
    )


@workers_group.command("scale")
@common_options
@click.argument("name")
@click.argument("processes", type=int)
def scale_command(ctx: AppContext, name: str, processes: int) -> None:
    """Ask the running worker NAME to run PROCESSES child processes.

    It may run on any host: the request goes through the database, and the worker
    applies it within a second. Shrinking lets the jobs running finish; the reserve
    follows the count.
    """
    asked = ctx.app().scale_worker(name, processes)
    if not asked:
        raise InvalidArguments(
            f"no running worker is named {name!r} (see `tasktrail workers` for the names)"
        )
    click.echo(
        f"asked worker {name} to run {processes} processes"
        + (f" ({asked} workers of that name)" if asked > 1 else "")
        + "; `tasktrail workers` shows when it has"
    )


@cli.group("queues")
def queues_group() -> None:
    """The queues: their depth, and pausing them for every worker."""


@queues_group.command("list")
@common_options
@json_option
def queues_list_command(ctx: AppContext, as_json: bool) -> None:
    """Every queue with jobs queued, reserved or running, or paused: its depth and state."""
    queues = ctx.reader().queues()
    if as_json:
        echo_json([queue.to_dict() for queue in queues])
        return
    rows = [
        {
            **queue.to_dict(),
            "state": "paused" if queue.paused else "active",
            "changed_at": short_time(queue.changed_at),
            "changed_by": queue.changed_by or "",
        }
        for queue in queues
    ]
    print_table(
        rows,
        [
            ("name", "queue"),
            ("state", "state"),
            ("queued", "queued"),
            ("running", "reserved or running"),
            ("changed_by", "paused/resumed by"),
            ("changed_at", "at (UTC)"),
        ],
    )


@queues_group.command("pause")
@common_options
@click.argument("names", nargs=-1, required=True)
def queues_pause_command(ctx: AppContext, names: tuple[str, ...]) -> None:
    """Stop every worker claiming jobs from the queues NAMES (within a second); the
    jobs running finish. Jobs can still be enqueued."""
    app = ctx.app()
    for name in names:
        app.pause_queue(name)
        click.echo(f"queue {name} paused: workers claim no more of its jobs")


@queues_group.command("resume")
@common_options
@click.argument("names", nargs=-1, required=True)
def queues_resume_command(ctx: AppContext, names: tuple[str, ...]) -> None:
    """Let workers claim from the queues NAMES again."""
    app = ctx.app()
    for name in names:
        app.resume_queue(name)
        click.echo(f"queue {name} resumed")
