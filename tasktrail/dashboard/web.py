"""The dashboard's pages and actions (Starlette, Jinja2 templates in ``templates/``).

Every page is rendered on the server from the same public reads as the CLI (``App.jobs``,
``App.events``, ``App.stats``…). The small script in ``static/dashboard.js`` refreshes a
page's content in place every few seconds (the request says ``X-Fragment: 1`` and gets
the content alone) and shows a banner while the database, or the dashboard itself, cannot
be reached; the server keeps running through it and answers again once the database is
back.

Actions (retry, cancel, pause and resume a schedule) are ``POST`` requests and need a
token configured on the server. A browser signs in once with it (``/login``: a cookie
holding the token's name, signed with a key of this process, ``HttpOnly`` and
``SameSite=Strict``) and every form carries a CSRF field derived from that cookie; a
script sends ``Authorization: Bearer <token>`` instead. A request without credentials is
refused with 401, with wrong ones or on a read-only dashboard (no token) with 403. The
job's history records ``by: dashboard:<token name>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import inspect
import json
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2
import markupsafe
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..app import App
from ..backends import Activity
from ..backends.base import failure_rate
from ..clock import parse_duration, to_utc, utcnow
from ..errors import (
    BackendUnavailable,
    InvalidArguments,
    InvalidTransition,
    JobNotFound,
    ScheduleNotFound,
    TasktrailError,
)
from ..job import ACTIVE_STATUSES, FINAL_STATUSES, STATUSES, Job, Ref
from .metrics import metrics_text

__all__ = ["Token", "create_app", "parse_tokens"]

_SESSION_COOKIE = "tasktrail_session"
_PAGE_SIZE = 50
#: The most jobs a business object's page shows (newest first).
_REF_PAGE_JOBS = 500
#: The most jobs one filtered cancel cancels (the page offers to go on).
_CANCEL_SET = 1000
#: The bars of a task's chart on /tasks: stretches of the window.
_SPARK_BARS = 60


@dataclass(frozen=True, slots=True)
class Token:
    """A secret that allows actions; ``name`` is what the job's history records."""

    name: str
    secret: str


def parse_tokens(text: str | None) -> list[Token]:
    """``NAME:SECRET`` (or a bare ``SECRET``, named ``token``), several separated by
    commas, as ``--token`` and ``TASKTRAIL_DASHBOARD_TOKEN`` take them."""
    tokens: list[Token] = []
    for part in (piece.strip() for piece in (text or "").split(",")):
        if not part:
            continue
        name, sep, secret = part.partition(":")
        if not sep:
            name, secret = "token", part
        if not name or len(secret) < 8:
            raise InvalidArguments(
                "a dashboard token is NAME:SECRET with a secret of at least 8 characters, "
                f"got one named {name!r} with {len(secret)}"
            )
        tokens.append(Token(name, secret))
    return tokens


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _NotFound(Exception):
    pass


class Dashboard:
    """The state behind the routes: the app, the templates, the tokens, the signing key."""

    def __init__(self, app: App, tokens: Sequence[Token], refresh_seconds: float) -> None:
        self.app = app
        self.tokens = list(tokens)
        self.refresh_seconds = refresh_seconds
        self._key = secrets.token_bytes(32)  # sessions last as long as this process
        # One reader at a time: the App holds one database connection.
        self._lock = threading.Lock()
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("tasktrail.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(
            when=_when, seconds=_seconds, duration=_job_seconds, pretty=_pretty
        )

    # -- reading -------------------------------------------------------------------

    def read(self, function: Callable[[], Any]) -> Any:
        with self._lock:
            return function()

    # -- auth ------------------------------------------------------------------------

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def session_cookie(self, token: Token) -> str:
        return f"{token.name}.{self._sign('session:' + token.name)}"

    def session_name(self, request: Request) -> str | None:
        """The token name of a valid session cookie, if the request has one."""
        value = request.cookies.get(_SESSION_COOKIE, "")
        name, _, signature = value.rpartition(".")
        valid = bool(name) and hmac.compare_digest(signature, self._sign("session:" + name))
        if valid and any(token.name == name for token in self.tokens):
            return name
        return None

    def csrf(self, request: Request) -> str:
        return self._sign("csrf:" + request.cookies.get(_SESSION_COOKIE, ""))

    def token_for(self, secret: str) -> Token | None:
        for token in self.tokens:
            if hmac.compare_digest(token.secret.encode(), secret.encode()):
                return token
        return None

    async def actor(self, request: Request) -> str:
        """Who asks for an action (``dashboard:<token name>``), or raise _Refused."""
        if not self.tokens:
            raise _Refused(403, "this dashboard is read-only: start it with --token to act")
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, secret = header.partition(" ")
            token = self.token_for(secret.strip()) if scheme.lower() == "bearer" else None
            if token is None:
                raise _Refused(403, "the token given is not one of this dashboard's")
            return f"dashboard:{token.name}"
        name = self.session_name(request)
        if name is None:
            raise _Refused(401, "sign in with the dashboard's token to act")
        form = await request.form()
        if not hmac.compare_digest(str(form.get("csrf", "")), self.csrf(request)):
            raise _Refused(403, "the form's CSRF field is missing or wrong: reload the page")
        return f"dashboard:{name}"

    # -- rendering -----------------------------------------------------------------

    def page(
        self, request: Request, template: str, title: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        context.update(request=request, root=_root(request), csrf=self.csrf(request))
        context.setdefault("signed_in", self.session_name(request))
        context.setdefault("can_act", bool(self.tokens))
        content = self.templates.get_template(template).render(**context)
        if request.headers.get("x-fragment") == "1":
            return HTMLResponse(content, status_code=status)
        html = self.templates.get_template("base.html").render(
            content=markupsafe.Markup(content),
            title=title,
            refresh=self.refresh_seconds,
            query=request.query_params.get("q", ""),
            **{k: v for k, v in context.items() if k not in ("title",)},
        )
        return HTMLResponse(html, status_code=status)


def _root(request: Request) -> str:
    """The prefix the dashboard is mounted under ('' at the top)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def create_app(
    app: App,
    *,
    tokens: Sequence[Token] | str | None = None,
    refresh_seconds: float = 5.0,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI application.

    ``tokens`` allow actions (see :func:`parse_tokens` for the text form); without them
    the dashboard only reads, which the read-only role of ``roles.sql`` is enough for.
    """
    parsed = parse_tokens(tokens) if isinstance(tokens, str) or tokens is None else list(tokens)
    board = Dashboard(app, parsed, refresh_seconds)
    static = resources.files("tasktrail.dashboard").joinpath("static")

    def guarded(
        handler: Callable[[Dashboard, Request], Any],
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                if inspect.iscoroutinefunction(handler):
                    return await handler(board, request)  # type: ignore[no-any-return]
                # the reads block: off the event loop
                return await run_in_threadpool(handler, board, request)
            except _Refused as refused:
                return _problem(board, request, refused.status, str(refused))
            except (_NotFound, JobNotFound, ScheduleNotFound) as missing:
                return _problem(board, request, 404, str(missing))
            except InvalidArguments as bad:
                return _problem(board, request, 400, str(bad))
            except InvalidTransition as refused_change:
                return _problem(board, request, 409, str(refused_change))
            except BackendUnavailable as down:
                return _problem(board, request, 503, f"the database is unreachable: {down}")
            except TasktrailError as error:
                return _problem(board, request, 500, str(error))

        return endpoint

    routes = [
        Route("/", guarded(_overview)),
        Route("/search", guarded(_search)),
        Route("/refs/{type}/{id:path}", guarded(_ref_page)),
        Route("/jobs", guarded(_jobs_page)),
        Route("/jobs/{job_id:int}", guarded(_job_page)),
        Route("/jobs/cancel", guarded(_cancel_set), methods=["POST"]),
        Route("/jobs/{job_id:int}/retry", guarded(_retry), methods=["POST"]),
        Route("/jobs/{job_id:int}/cancel", guarded(_cancel), methods=["POST"]),
        Route("/tasks", guarded(_tasks_page)),
        Route("/workers", guarded(_workers_page)),
        Route("/schedules", guarded(_schedules_page)),
        Route("/schedules/{name}/pause", guarded(_pause), methods=["POST"]),
        Route("/schedules/{name}/resume", guarded(_resume), methods=["POST"]),
        Route("/login", guarded(_login), methods=["GET", "POST"]),
        Route("/logout", guarded(_logout), methods=["POST"]),
        Route("/metrics", guarded(_metrics)),
        Mount("/static", app=StaticFiles(directory=str(static)), name="static"),
    ]
    return Starlette(routes=routes)


def _problem(board: Dashboard, request: Request, status: int, message: str) -> Response:
    if request.headers.get("authorization") or "json" in request.headers.get("accept", ""):
        return JSONResponse({"error": message}, status_code=status)
    return board.page(request, "problem.html", f"{status}", status=status, status_code=status,
                      message=message)  # fmt: skip


# -- pages -------------------------------------------------------------------------


def _overview(board: Dashboard, request: Request) -> Response:
    app = board.app
    # (what each costs at 1M jobs: bench/results/dashboard-*.md; the per-task
    # percentiles, which read every attempt of the window, are the tasks page's)
    queues, workers, schedules, hour, day = board.read(
        lambda: (app.queues(), app.workers(), app.schedules.list(),
                 app.activity(timedelta(hours=1), 60), app.activity(timedelta(days=1), 48))
    )  # fmt: skip
    now = utcnow()
    due = sorted((s for s in schedules if not s.paused), key=lambda record: record.next_due_at)[:10]
    charts = [
        _chart("hour", "last hour, per minute", hour),
        _chart("day", "last day, per 30 min", day),
    ]
    tasks = [_chart(task, "last hour", hour.task(task)) for task in sorted(hour.by_task)]
    return board.page(
        request, "overview.html", "Overview", queues=queues, tasks=tasks,
        workers=[w for w in workers if w.status == "running"], due=due, now=now, charts=charts,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Bar:
    x: float
    #: (status, y, height) of each part, stacked from the bottom of a 60-high box
    parts: list[tuple[str, float, float]]
    #: the failure rate's bar: (y, height), in a 30-high box
    rate: tuple[float, float] | None
    title: str


@dataclass(frozen=True, slots=True)
class _Chart:
    name: str
    caption: str
    width: int
    bars: list[_Bar]
    ended: Counter[str]
    peak: int

    @property
    def failure_rate(self) -> float | None:
        return failure_rate(self.ended)


def _chart(name: str, caption: str, activity: Activity) -> _Chart:
    """An SVG bar chart's geometry: jobs ended per stretch (stacked by outcome) and the
    failure rate per stretch, each bar 8 wide in a 10-wide slot."""
    totals = [sum(counts.values()) for counts in activity.ended]
    peak = max(totals, default=0)
    bars = []
    for index, counts in enumerate(activity.ended):
        start = activity.since + activity.bucket * index
        y, parts = 60.0, []
        for status in ("succeeded", "failed", "cancelled"):
            if counts.get(status):
                height = counts[status] / peak * 58
                y -= height
                parts.append((status, round(y, 2), round(height, 2)))
        rate = activity.failure_rate(index)
        described = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
        bars.append(
            _Bar(
                x=index * 10 + 1,
                parts=parts,
                rate=None if rate is None else (round(30 - rate * 28, 2), round(rate * 28, 2)),
                title=f"{_when(start)} UTC, {_seconds(activity.bucket.total_seconds())}: "
                f"{described}",
            )
        )
    ended: Counter[str] = Counter()
    for counts in activity.ended:
        ended.update(counts)
    return _Chart(name, caption, len(activity.ended) * 10, bars, ended, peak)


def _search(board: Dashboard, request: Request) -> Response:
    text = request.query_params.get("q", "").strip()
    root = _root(request)
    if not text:
        return RedirectResponse(f"{root}/", status_code=303)
    if text.isdigit():
        return RedirectResponse(f"{root}/jobs/{int(text)}", status_code=303)
    if ":" in text:
        ref = Ref.parse(text)
        return RedirectResponse(f"{root}/refs/{_quote(ref.type)}/{_quote(ref.id)}", 303)
    return RedirectResponse(f"{root}/jobs?{urlencode({'task': text})}", status_code=303)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _ref_page(board: Dashboard, request: Request) -> Response:
    ref = Ref.of((request.path_params["type"], request.path_params["id"]))
    assert ref is not None
    jobs: list[Job] = board.read(
        lambda: board.app.jobs(ref=ref, descendants=True, limit=_REF_PAGE_JOBS)
    )
    if not jobs:
        raise _NotFound(f"no job has ref {ref}")
    return board.page(
        request, "ref.html", str(ref), ref=ref, jobs=jobs, timeline=_timeline(jobs),
        per_task=_per_task(jobs), truncated=len(jobs) == _REF_PAGE_JOBS,
    )  # fmt: skip


def _timeline(jobs: list[Job]) -> dict[int, tuple[float, float]]:
    """Each job's bar: where it starts and how wide it is, in percent of the span from
    the first job's creation to the last job's end (or now)."""
    now = utcnow()
    start = min(job.created_at for job in jobs)
    end = max(max(job.finished_at or now, job.created_at) for job in jobs)
    span = max((end - start).total_seconds(), 1e-6)
    bars: dict[int, tuple[float, float]] = {}
    for job in jobs:
        if job.started_at is None:
            continue
        left = (job.started_at - start).total_seconds() / span * 100
        width = ((job.finished_at or now) - job.started_at).total_seconds() / span * 100
        bars[job.id] = (round(left, 2), round(max(width, 0.4), 2))
    return bars


@dataclass(frozen=True, slots=True)
class _TaskLine:
    task: str
    counts: dict[str, int]
    mean: float | None
    longest: float | None


def _per_task(jobs: list[Job]) -> list[_TaskLine]:
    by_task: dict[str, list[Job]] = {}
    for job in jobs:
        by_task.setdefault(job.task, []).append(job)
    lines = []
    for task, own in sorted(by_task.items()):
        runs = [seconds for job in own if (seconds := _job_seconds(job)) is not None]
        lines.append(
            _TaskLine(
                task,
                dict(Counter(job.status for job in own)),
                sum(runs) / len(runs) if runs else None,
                max(runs) if runs else None,
            )
        )
    return lines


_FILTERS = ("task", "queue", "status", "ref", "worker", "since", "until")


def _job_filters(board: Dashboard, query: Mapping[str, str], known: set[str]) -> dict[str, Any]:
    """``App.jobs`` keywords from a page's filters (``/jobs``' query, the filtered
    cancel's form); an unknown name or a bad value is an InvalidArguments naming it."""
    unknown = sorted(set(query) - known)
    if unknown:
        raise InvalidArguments(
            f"unknown filter {unknown[0]!r}; filters are {', '.join(sorted(known))}"
        )
    filters: dict[str, Any] = {}
    for name in ("task", "queue"):
        if query.get(name):
            filters[name] = query[name]
    if query.get("status"):
        filters["status"] = [s for s in query["status"].split(",") if s]
    if query.get("ref"):
        filters["ref"] = Ref.parse(query["ref"])
    for name, option in (("worker", "worker_id"), ("before", "before_id")):
        if query.get(name):
            if not query[name].isdigit():
                raise InvalidArguments(f"{name} must be a job or worker id, got {query[name]!r}")
            filters[option] = int(query[name])
    for name in ("since", "until"):
        if query.get(name):
            filters[name] = _moment(name, query[name])
    if "task" in filters:
        filters["task"] = _task_name(board.app, filters["task"])
    return filters


def _jobs_page(board: Dashboard, request: Request) -> Response:
    query = request.query_params
    filters = _job_filters(board, query, {*_FILTERS, "before"})
    jobs: list[Job] = board.read(lambda: board.app.jobs(**filters, limit=_PAGE_SIZE + 1))
    more = len(jobs) > _PAGE_SIZE
    jobs = jobs[:_PAGE_SIZE]
    kept = {k: v for k, v in query.items() if k != "before" and v}
    next_page = f"?{urlencode({**kept, 'before': jobs[-1].id})}" if more and jobs else None
    return board.page(
        request, "jobs.html", "Jobs", jobs=jobs, next_page=next_page, filters=kept,
        statuses=STATUSES, cancellable=bool(kept) and bool(jobs),
    )  # fmt: skip


def _task_name(app: App, name: str) -> str:
    try:
        return app.resolve_task_name(name)
    except TasktrailError:
        return name


def _moment(name: str, text: str) -> datetime:
    """``since``/``until``: an ISO time, or a duration back from now (``15m``, ``2h``)."""
    try:
        return utcnow() - parse_duration(text)
    except (InvalidArguments, ValueError):
        pass
    try:
        return to_utc(datetime.fromisoformat(text), name)
    except ValueError:
        raise InvalidArguments(
            f"{name} must be an ISO time (2026-12-07T10:00) or a duration back from now "
            f"(15m, 2h, 7d), got {text!r}"
        ) from None


def _job_page(board: Dashboard, request: Request) -> Response:
    job_id = request.path_params["job_id"]
    app = board.app
    job, events, tree, after = board.read(
        lambda: (app.job(job_id), app.events(job_id), app.tree(job_id)[:200],
                 app.after_results(job_id))
    )  # fmt: skip
    return board.page(
        request, "job.html", f"Job {job_id}", job=job, events=events, tree=tree, after=after,
        final=FINAL_STATUSES, active=ACTIVE_STATUSES,
    )  # fmt: skip


def _tasks_page(board: Dashboard, request: Request) -> Response:
    window_text = request.query_params.get("window", "1h")
    window = timedelta(seconds=parse_duration(window_text).total_seconds())
    stats, activity = board.read(
        lambda: (board.app.stats(window), board.app.activity(window, _SPARK_BARS))
    )
    sparks = {task: _chart(task, window_text, activity.task(task)) for task in activity.by_task}
    return board.page(
        request, "tasks.html", "Tasks", stats=stats, window=window_text, sparks=sparks
    )


def _workers_page(board: Dashboard, request: Request) -> Response:
    app = board.app
    workers, running = board.read(
        lambda: (app.workers(include_stopped=True, limit=200),
                 app.jobs(status=("reserved", "running"), limit=1000))
    )  # fmt: skip
    by_worker: dict[int, list[Job]] = {}
    for job in running:
        if job.worker_id is not None:
            by_worker.setdefault(job.worker_id, []).append(job)
    return board.page(request, "workers.html", "Workers", workers=workers, by_worker=by_worker)


def _schedules_page(board: Dashboard, request: Request) -> Response:
    name = request.query_params.get("name")
    schedules = board.read(board.app.schedules.list)
    ticks = board.read(lambda: board.app.schedules.ticks(name, limit=50)) if name else []
    return board.page(
        request, "schedules.html", "Schedules", schedules=schedules, ticks=ticks, name=name
    )


def _metrics(board: Dashboard, request: Request) -> Response:
    text = board.read(lambda: metrics_text(board.app))
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


# -- actions -----------------------------------------------------------------------


def _acted(request: Request, location: str, payload: dict[str, Any]) -> Response:
    if request.headers.get("authorization"):
        return JSONResponse(payload)
    return RedirectResponse(_root(request) + location, status_code=303)


async def _retry(board: Dashboard, request: Request) -> Response:
    by = await board.actor(request)
    job_id = request.path_params["job_id"]
    app = board.app
    job = board.read(lambda: app.backend.retry(app.job(job_id).id, now=utcnow(), by=by))
    return _acted(request, f"/jobs/{job_id}", job.to_dict())


async def _cancel(board: Dashboard, request: Request) -> Response:
    by = await board.actor(request)
    job_id = request.path_params["job_id"]
    form = await request.form() if not request.headers.get("authorization") else {}
    reason = str(form.get("reason") or "") or None
    app = board.app
    job = board.read(
        lambda: app.backend.cancel(app.job(job_id).id, now=utcnow(), by=by, reason=reason)
    )
    return _acted(request, f"/jobs/{job_id}", job.to_dict())


async def _cancel_set(board: Dashboard, request: Request) -> Response:
    """Cancel the active jobs a filter names (the form's fields, as ``/jobs`` takes
    them, at least one), up to _CANCEL_SET at a time; each job's history records it."""
    by = await board.actor(request)
    fields = {k: str(v) for k, v in (await request.form()).items() if str(v)}
    reason = fields.pop("reason", None)
    fields.pop("csrf", None)
    fields.update({k: v for k, v in request.query_params.items() if v})
    filters = _job_filters(board, fields, set(_FILTERS))
    if not filters:
        raise InvalidArguments("name at least one filter: this cancels every job it matches")
    statuses = [s for s in filters.pop("status", sorted(ACTIVE_STATUSES)) if s in ACTIVE_STATUSES]
    if not statuses:
        raise InvalidArguments(f"only active jobs can be cancelled, not {fields['status']!r}")
    app = board.app

    def cancel() -> tuple[list[Job], bool]:
        found = app.jobs(**filters, status=statuses, limit=_CANCEL_SET + 1)
        cancelled = []
        for job in found[:_CANCEL_SET]:
            with contextlib.suppress(InvalidTransition):  # it ended meanwhile
                cancelled.append(app.backend.cancel(job.id, now=utcnow(), by=by, reason=reason))
        return cancelled, len(found) > _CANCEL_SET

    cancelled, more = board.read(cancel)
    if request.headers.get("authorization"):
        return JSONResponse({"cancelled": [job.id for job in cancelled], "more": more})
    return board.page(
        request, "cancelled.html", "Cancelled", jobs=cancelled, more=more,
        filters={k: v for k, v in fields.items() if k in _FILTERS},
    )  # fmt: skip


async def _pause(board: Dashboard, request: Request) -> Response:
    await board.actor(request)
    record = board.read(lambda: board.app.schedules.pause(request.path_params["name"]))
    return _acted(request, "/schedules", record.to_dict())


async def _resume(board: Dashboard, request: Request) -> Response:
    await board.actor(request)
    record = board.read(lambda: board.app.schedules.resume(request.path_params["name"]))
    return _acted(request, "/schedules", record.to_dict())


async def _login(board: Dashboard, request: Request) -> Response:
    if request.method == "GET":
        return board.page(request, "login.html", "Sign in", failed=False)
    form = await request.form()
    token = board.token_for(str(form.get("token", "")))
    if token is None:
        return board.page(request, "login.html", "Sign in", status=403, failed=True)
    response = RedirectResponse(_root(request) + "/", status_code=303)
    response.set_cookie(
        _SESSION_COOKIE, board.session_cookie(token), httponly=True, samesite="strict",
        path=(_root(request) or "/"),
    )  # fmt: skip
    return response


async def _logout(board: Dashboard, request: Request) -> Response:
    response = RedirectResponse(_root(request) + "/", status_code=303)
    response.delete_cookie(_SESSION_COOKIE, path=(_root(request) or "/"))
    return response


# -- formatting --------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


def _job_seconds(job: Job) -> float | None:
    if job.started_at is None or job.finished_at is None:
        return None
    return (job.finished_at - job.started_at).total_seconds()


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
