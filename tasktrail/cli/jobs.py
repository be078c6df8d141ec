"""Commands about jobs: ``jobs``, ``show``, ``tree``, ``enqueue``, ``retry``, ``cancel``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import InvalidArguments, InvalidTransition
from ..job import STATUSES, Event, Job
from . import AppContext, cli, common_options, json_option, parse_since
from .output import echo_json, print_table, short_time

_JOB_COLUMNS = [
    ("id", "id"),
    ("task", "task"),
    ("queue", "queue"),
    ("status", "status"),
    ("ref", "ref"),
    ("attempts", "attempts"),
    ("created_at", "created (UTC)"),
    ("finished_at", "finished (UTC)"),
    ("worker_name", "worker"),
    ("error", "error"),
]


def _attempts(job: Job) -> str:
    """Attempts made; while more may come, of how many allowed (an attempt given back,
    by a shutdown or a busy process, raises that number; a final job shows only what
    it used)."""
    if job.is_final:
        return str(job.attempts)
    return f"{job.attempts}/{job.max_attempts}"


def _error(job: Job) -> str:
    """The error, said to be the previous attempt's while the job runs or waits again."""
    if not job.error:
        return ""
    return job.error if job.is_final else f"(previous attempt) {job.error}"


def _worker(job: Job) -> str:
    """The worker that holds it, or ended it; none while it waits in the queue."""
    return "" if job.status == "queued" else job.worker_name or ""


def _job_row(job: Job) -> dict[str, Any]:
    row = job.to_dict()
    row["ref"] = str(job.ref) if job.ref else ""
    row["attempts"] = _attempts(job)
    row["created_at"] = short_time(job.created_at)
    row["finished_at"] = short_time(job.finished_at)
    row["worker_name"] = _worker(job)
    row["error"] = _error(job).splitlines()[0][:80] if job.error else ""
    return row


def _limit(value: int) -> int | None:
    if value < 0:
        raise InvalidArguments(f"--limit must be 0 (all) or more, got {value}")
    return None if value == 0 else value


@cli.command("jobs")
@common_options
@click.option("--ref", help="Business object, type:id (e.g. website:42).")
@click.option("--ref-type", help="Every object of a type (e.g. website).")
@click.option("--task", help="Task name.")
@click.option("--queue", help="Queue name.")
@click.option("--status", type=click.Choice(STATUSES), multiple=True, help="Repeatable.")
@click.option("--worker", "worker_id", type=int, help="Worker id.")
@click.option("--since", help="Created since: a duration ago (2h) or an ISO time.")
@click.option("--until", help="Created before: a duration ago or an ISO time.")
@click.option(
    "--descendants",
    is_flag=True,
    help="With --ref or --ref-type: also every follow-up below those jobs, whatever its ref.",
)
@click.option("--limit", type=int, default=50, show_default=True, help="0 for all.")
@json_option
def jobs_command(
    ctx: AppContext,
    ref: str | None,
    ref_type: str | None,
    task: str | None,
    queue: str | None,
    status: tuple[str, ...],
    worker_id: int | None,
    since: str | None,
    until: str | None,
    descendants: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first.

    With --descendants, the jobs of --ref (or --ref-type) and every job they enqueued,
    and so on down (a business object's whole tree of work); the other filters apply to
    all of them.
    """
    app = ctx.reader()
    found = app.jobs(
        ref=ref,
        ref_type=ref_type,
        task=app.resolve_task_name(task) if task is not None else None,
        queue=queue,
        status=status or None,
        worker_id=worker_id,
        since=parse_since(since),
        until=parse_since(until),
        descendants=descendants,
        limit=_limit(limit),
    )
    if as_json:
        echo_json([job.to_dict() for job in found])
    else:
        print_table([_job_row(job) for job in found], _JOB_COLUMNS)


def _duration(job: Job) -> str:
    if job.started_at is None:
        return ""
    if job.finished_at is None:
        return "running" if job.status == "running" else ""
    seconds = (job.finished_at - job.started_at).total_seconds()
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def tree_lines(jobs: list[Job], marked: int | None = None) -> list[str]:
    """A tree of jobs (the root first, parents before their follow-ups) as text: one
    line per job with its status, task, ref and run time, indented under its parent."""
    below: dict[int | None, list[Job]] = {}
    known = {job.id for job in jobs}
    for job in jobs:
        parent = job.parent_id if job.parent_id in known else None
        below.setdefault(parent, []).append(job)
    lines: list[str] = []

    def walk(job: Job, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        fields = [str(job.id), job.status, job.task, str(job.ref or ""), _duration(job)]
        text = "  ".join(field for field in fields if field)
        lines.append(prefix + branch + text + ("   <-" if job.id == marked else ""))
        children = below.get(job.id, [])
        inner = prefix + ("" if top else ("   " if last else "│  "))
        for index, child in enumerate(children):
            walk(child, inner, index == len(children) - 1, False)

    for root in below.get(None, []):
        walk(root, "", True, True)
    return lines


@cli.command("tree")
@common_options
@click.argument("job_id", type=int)
@json_option
def tree_command(ctx: AppContext, job_id: int, as_json: bool) -> None:
    """The tree of follow-up jobs JOB_ID belongs to, from its root: each job's id,
    status, task, ref and run time, under the job that enqueued it (JOB_ID marked)."""
    jobs = ctx.reader().tree(job_id)
    if as_json:
        echo_json([job.to_dict() for job in jobs])
        return
    for line in tree_lines(jobs, marked=job_id):
        click.echo(line)


def _event_summary(event: Event) -> str:
    detail = dict(event.detail)
    detail.pop("traceback", None)
    parts = []
    if "error" in detail:
        parts.append(str(detail.pop("error")))
    parts.extend(f"{key}={value}" for key, value in detail.items())
    return "; ".join(parts)


def _after_line(job: Job, after: list[tuple[int, str | None, Any]]) -> str:
    """The jobs a job waits (or waited) for and how they stand: ``12 succeeded, 13
    running: waiting for 1 (policy succeeded)``."""
    if not after:
        return ""
    each = ", ".join(f"{after_id} {status or 'pruned'}" for after_id, status, _ in after)
    if job.status == "waiting":
        return f"{each}: waiting for {job.waiting_for} (policy {job.after_policy})"
    return f"{each} (policy {job.after_policy})"


@cli.command("show")
@common_options
@click.argument("job_id", type=int)
@json_option
def show_command(ctx: AppContext, job_id: int, as_json: bool) -> None:
    """A job and its whole history."""
    app = ctx.reader()
    job = app.job(job_id)
    events = app.events(job_id)
    if as_json:
        echo_json({"job": job.to_dict(), "events": [event.to_dict() for event in events]})
        return
    fields = [
        ("job", job.id),
        ("task", job.task),
        ("queue", job.queue),
        ("status", job.status),
        ("ref", job.ref or ""),
        ("priority", job.priority),
        ("args", json.dumps(job.args)),
        ("kwargs", json.dumps(job.kwargs)),
        ("attempts", _attempts(job).replace("/", " of ")),
        ("timeout", f"{job.timeout:g}s" if job.timeout else "none"),
        ("run at", short_time(job.run_at)),
        ("created", short_time(job.created_at)),
        ("started", short_time(job.started_at)),
        ("finished", short_time(job.finished_at)),
        ("worker", _worker(job)),
        ("parent", job.parent_id or ""),
        ("tree", f"root {job.root_id} (tasktrail tree {job.id})" if job.parent_id else ""),
        ("after", _after_line(job, app.backend.after_results(job.id) if job.after_policy else [])),
        ("result", json.dumps(job.result) if job.status == "succeeded" else ""),
        ("error", _error(job)),
    ]
    for label, value in fields:
        click.echo(f"{label + ':':<10} {value}")
    click.echo("")
    rows = [
        {
            "at": short_time(event.at),
            "kind": event.kind,
            "attempt": event.attempt,
            "worker": event.worker_name or "",
            "host": event.host or "",
            "pid": event.pid or "",
            "child": event.child_pid or "",
            "detail": _event_summary(event),
        }
        for event in events
    ]
    print_table(
        rows,
        [
            ("at", "at (UTC)"),
            ("kind", "event"),
            ("attempt", "attempt"),
            ("worker", "worker"),
            ("host", "host"),
            ("pid", "pid"),
            ("child", "child pid"),
            ("detail", "detail"),
        ],
        title="history",
    )
    for event in events:
        if event.detail.get("traceback"):
            click.echo(f"\ntraceback of attempt {event.attempt} ({short_time(event.at)}):")
            click.echo(str(event.detail["traceback"]).rstrip())


def json_value(text: str | None, what: str, kind: type) -> Any:
    """The JSON of an option: given inline, as ``@path`` (read from that file) or as
    ``-`` (read from standard input), for payloads too big or awkward for a shell."""
    if text is None:
        return kind()
    if text == "-":
        what = f"{what} (from standard input)"
        text = sys.stdin.read()
    elif text.startswith("@"):
        path = text[1:]
        what = f"{what} (from {path})"
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise InvalidArguments(f"cannot read {what}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise InvalidArguments(f"{what} is not UTF-8 text") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArguments(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArguments(f"{what} is nested too deeply to read") from None
    if not isinstance(value, kind):
        raise InvalidArguments(f"{what} must be a JSON {'object' if kind is dict else 'array'}")
    return value


@cli.command("enqueue")
@common_options
@click.argument("task_name")
@click.option(
    "--args",
    "args_json",
    metavar="JSON",
    help="Positional arguments, a JSON array: '[42, \"x\"]'; @FILE reads it from a file, - "
    "from standard input.",
)
@click.option(
    "--kwargs",
    "kwargs_json",
    metavar="JSON",
    help="Keyword arguments, a JSON object (or @FILE, or - for standard input).",
)
@click.option("--ref", help="Business object, type:id.")
@click.option("--queue", help="Overrides the task's queue.")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--delay", help="Run no sooner than this from now (30s, 5m).")
@click.option(
    "--after",
    "after",
    type=int,
    multiple=True,
    metavar="JOB_ID",
    help="Wait until this job has ended (repeatable): the job is `waiting` until then.",
)
@click.option(
    "--after-policy",
    type=click.Choice(["succeeded", "finished"]),
    default="succeeded",
    show_default=True,
    help="succeeded: cancelled if one of them does not succeed; finished: runs anyway.",
)
@json_option
def enqueue_command(
    ctx: AppContext,
    task_name: str,
    args_json: str | None,
    kwargs_json: str | None,
    ref: str | None,
    queue: str | None,
    priority: int | None,
    delay: str | None,
    after: tuple[int, ...],
    after_policy: str,
    as_json: bool,
) -> None:
    """Enqueue a job of a registered task (needs --app)."""
    from ..clock import parse_duration

    app = ctx.app(need_tasks=True)
    task = app.get_task(task_name)
    args = json_value(args_json, "--args", list)
    kwargs = json_value(kwargs_json, "--kwargs", dict)
    handle = task.enqueue(
        *args,
        ref=ref,
        queue=queue,
        priority=priority,
        delay=parse_duration(delay) if delay else None,
        after=after or None,
        after_policy=after_policy,
        **kwargs,
    )
    job = handle.get()
    if as_json:
        echo_json(job.to_dict())
    else:
        state = f", {job.status}" if job.status != "queued" else ""
        click.echo(f"enqueued job {job.id} ({job.task}, queue {job.queue}{state})")


def _change_many(
    ctx: AppContext,
    job_ids: tuple[int, ...],
    as_json: bool,
    change: Any,
    verb: str,
    allowed: tuple[str, ...],
) -> None:
    app = ctx.reader()
    # Check every job first, so that one bad id changes nothing.
    for job_id in job_ids:
        job = app.job(job_id)
        if job.status not in allowed:
            raise InvalidTransition(
                f"job {job_id} is {job.status}; only {_either(allowed)} jobs can be {verb}"
            )
    changed = [change(app, job_id) for job_id in job_ids]
    if as_json:
        echo_json([job.to_dict() for job in changed])
    else:
        for job in changed:
            click.echo(_changed_line(job, verb))


def _either(words: tuple[str, ...]) -> str:
    """``a, b or c``."""
    return " or ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} or {words[-1]}"


def _changed_line(job: Job, verb: str) -> str:
    """What a cancel or retry did, as it is now."""
    if job.status == "running" and job.cancel_requested_at is not None:
        where = f" on worker {job.worker_name}" if job.worker_name else ""
        return (
            f"job {job.id}: cancel requested; it is running{where} and is being stopped "
            f"(tasktrail show {job.id} shows when it has)"
        )
    return f"job {job.id} {verb} (now {job.status})"


@cli.command("retry")
@common_options
@click.argument("job_ids", type=int, nargs=-1)
@click.option(
    "--status",
    type=click.Choice(("failed", "cancelled")),
    multiple=True,
    help="With no ids: retry jobs in this status (repeatable).",
)
@click.option("--task", help="With no ids: only this task.")
@click.option("--queue", help="With no ids: only this queue.")
@click.option("--ref", help="With no ids: only this business object, type:id.")
@click.option("--since", help="With no ids: created since (1h, or an ISO time).")
@click.option(
    "--limit",
    type=int,
    default=1000,
    show_default=True,
    help="With no ids: at most this many (0 for all).",
)
@json_option
def retry_command(
    ctx: AppContext,
    job_ids: tuple[int, ...],
    status: tuple[str, ...],
    task: str | None,
    queue: str | None,
    ref: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Queue failed or cancelled jobs again: by id, or by filter
    (e.g. --status failed --task refresh_frontpage --since 1h)."""
    filters = bool(status or task or queue or ref or since)
    if job_ids and filters:
        raise InvalidArguments("give job ids or filters (--status, --task, …), not both")
    if not job_ids:
        if not filters:
            raise InvalidArguments(
                "give job ids, or filters such as --status failed --task NAME --since 1h"
            )
        app = ctx.reader()
        found = app.jobs(
            status=status or ("failed", "cancelled"),
            task=app.resolve_task_name(task) if task is not None else None,
            queue=queue,
            ref=ref,
            since=parse_since(since),
            limit=_limit(limit),
        )
        job_ids = tuple(job.id for job in reversed(found))
        if not job_ids and not as_json:
            click.echo("no job matches those filters")
            return
    _change_many(
        ctx,
        job_ids,
        as_json,
        lambda app, job_id: app.retry(job_id),
        "retried",
        ("failed", "cancelled"),
    )


@cli.command("cancel")
@common_options
@click.argument("job_ids", type=int, nargs=-1, required=True)
@click.option("--reason", help="Recorded in the job's history.")
@click.option(
    "--tree",
    is_flag=True,
    help="Also every follow-up below each job that is still waiting, queued, reserved or running "
    "(a job that has ended is left as it is).",
)
@json_option
def cancel_command(
    ctx: AppContext, job_ids: tuple[int, ...], reason: str | None, tree: bool, as_json: bool
) -> None:
    """Cancel jobs: waiting, queued or reserved ones at once, running ones are killed by
    their worker."""
    if tree:
        app = ctx.reader()
        for job_id in job_ids:
            app.job(job_id)  # one unknown id changes nothing
        changed = [job for job_id in job_ids for job in app.cancel_tree(job_id, reason=reason)]
        if as_json:
            echo_json([job.to_dict() for job in changed])
        else:
            for job in changed:
                ended = job.status not in ("cancelled", "running")
                click.echo(
                    f"job {job.id} had ended ({job.status}): left as it is"
                    if ended
                    else _changed_line(job, "cancelled")
                )
        return
    _change_many(
        ctx,
        job_ids,
        as_json,
        lambda app, job_id: app.cancel(job_id, reason=reason),
        "cancelled",
        ("waiting", "queued", "reserved", "running"),
    )
