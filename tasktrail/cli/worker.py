"""``tasktrail worker``: run a worker client in this process."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ..errors import InvalidArguments
from ..logs import LogFormat, setup_logging
from ..worker import WorkerConfig
from . import AppContext, cli, common_options, log_format_option


def _autoscale_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(",")
    try:
        if not sep:
            raise ValueError
        return int(low), int(high)
    except ValueError:
        raise InvalidArguments(
            f"--autoscale must be MIN,MAX (two whole numbers, e.g. 2,8), got {text!r}"
        ) from None


@cli.command("worker")
@common_options
@click.option(
    "--processes",
    "-p",
    type=int,
    envvar="TASKTRAIL_PROCESSES",
    show_envvar=True,
    help="Child processes to fork (default: CPU count).",
)
@click.option(
    "--reserve",
    "-r",
    type=int,
    envvar="TASKTRAIL_RESERVE",
    show_envvar=True,
    help="Most jobs held at once: running and queued in the children (default: "
    "64 x processes). The worker claims only what its processes begin now or within a "
    "round trip; only floods of jobs shorter than a round trip fill the rest, as the "
    "children's queues.",
)
@click.option(
    "--queues",
    "-q",
    default="",
    envvar="TASKTRAIL_QUEUES",
    show_envvar=True,
    help="Comma-separated queues to serve (default: all).",
)
@click.option(
    "--name", envvar="TASKTRAIL_WORKER_NAME", help="Worker name in history (default: host:pid)."
)
@click.option(
    "--grace",
    type=float,
    default=30.0,
    show_default=True,
    envvar="TASKTRAIL_GRACE",
    show_envvar=True,
    help="Seconds running jobs get to finish on shutdown.",
)
@click.option(
    "--kill-grace",
    type=float,
    default=5.0,
    show_default=True,
    envvar="TASKTRAIL_KILL_GRACE",
    show_envvar=True,
    help="Seconds from SIGTERM to SIGKILL when a child must stop.",
)
@click.option(
    "--max-tasks-per-child",
    type=int,
    envvar="TASKTRAIL_MAX_TASKS_PER_CHILD",
    show_envvar=True,
    help="Replace a child after this many jobs.",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=float,
    default=30.0,
    show_default=True,
    envvar="TASKTRAIL_LEASE",
    show_envvar=True,
    help="Seconds without heartbeat after which this worker counts as lost.",
)
@click.option(
    "--poll-interval",
    type=float,
    default=1.0,
    show_default=True,
    envvar="TASKTRAIL_POLL_INTERVAL",
    show_envvar=True,
    help="Longest wait between looks at the queue when idle.",
)
@click.option(
    "--burst", is_flag=True, help="Exit once the queues hold no queued, reserved or running job."
)
@click.option(
    "--unknown-task-grace",
    type=float,
    default=3600.0,
    show_default=True,
    envvar="TASKTRAIL_UNKNOWN_TASK_GRACE",
    show_envvar=True,
    help="Seconds a job of a task this worker does not have (not deployed here yet) is put "
    "back for later, without using an attempt, before it fails.",
)
@click.option(
    "--autoscale",
    metavar="MIN,MAX",
    envvar="TASKTRAIL_AUTOSCALE",
    show_envvar=True,
    help="Scale the processes between MIN and MAX by itself: one more each second while "
    "all are busy and jobs wait, one fewer when one has been idle for --autoscale-idle "
    "seconds. Starts with --processes (default: MIN).",
)
@click.option(
    "--autoscale-idle",
    type=float,
    default=10.0,
    show_default=True,
    envvar="TASKTRAIL_AUTOSCALE_IDLE",
    show_envvar=True,
    help="Seconds a process stays idle before --autoscale retires it.",
)
@click.option(
    "--metrics-port",
    type=int,
    envvar="TASKTRAIL_METRICS_PORT",
    show_envvar=True,
    help="Serve this worker's own metrics (jobs running and buffered, round trips to the "
    "database, outcomes) in Prometheus text at http://HOST:PORT/metrics, from the "
    "supervisor; 0: any free port, named in the log. Needs pip install "
    "'tasktrail[dashboard]'. Without it nothing listens.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    envvar="TASKTRAIL_METRICS_HOST",
    show_envvar=True,
    help="Address --metrics-port listens on (0.0.0.0: every interface).",
)
@click.option("--verbose", "-v", is_flag=True, help="Log every job.")
@click.option("--quiet", is_flag=True, help="Log warnings and errors only.")
@log_format_option
def worker_command(
    ctx: AppContext,
    processes: int | None,
    reserve: int | None,
    queues: str,
    name: str | None,
    grace: float,
    kill_grace: float,
    max_tasks_per_child: int | None,
    lease_seconds: float,
    poll_interval: float,
    burst: bool,
    unknown_task_grace: float,
    autoscale: str | None,
    autoscale_idle: float,
    metrics_port: int | None,
    metrics_host: str,
    verbose: bool,
    quiet: bool,
    log_format: LogFormat,
) -> None:
    """Run a worker: reserve jobs and run them in forked processes (needs --app).

    SIGTERM or SIGINT stops it gracefully: it claims no more, jobs not begun are given back
    at once, running ones get --grace seconds, then are killed and requeued. A second
    signal stops at once. SIGTTIN adds a process, SIGTTOU retires one (it finishes its
    job first); so does `tasktrail workers scale NAME N`, from any host.
    """
    setup_logging(logging.WARNING if quiet else logging.INFO, log_format)
    if not verbose and not quiet:
        logging.getLogger("tasktrail.worker.jobs").setLevel(logging.WARNING)
    options: dict[str, Any] = {
        "queues": tuple(q.strip() for q in queues.split(",") if q.strip()),
        "name": name,
        "grace": grace,
        "kill_grace": kill_grace,
        "max_tasks_per_child": max_tasks_per_child,
        "lease_seconds": lease_seconds,
        "poll_interval": poll_interval,
        "burst": burst,
        "reserve": reserve,
        "unknown_task_grace": unknown_task_grace,
        "autoscale_idle": autoscale_idle,
        "metrics_port": metrics_port,
        "metrics_host": metrics_host,
    }
    if autoscale is not None:
        low, high = _autoscale_range(autoscale)
        options["autoscale"] = (low, high)
        if processes is None:
            processes = low
    if processes is not None:
        options["processes"] = processes
    config = WorkerConfig(**options)
    if config.reserve is not None and config.reserve < config.initial_processes:
        click.echo(
            f"Warning: --reserve {config.reserve} is below --processes "
            f"{config.initial_processes}: at most {config.reserve} jobs run at once, so "
            f"{config.initial_processes - config.reserve} processes stay idle",
            err=True,
        )
    app = ctx.app(need_tasks=True)
    sys.exit(app.run_worker(config))
