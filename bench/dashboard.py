"""The dashboard scenario (issue 18): every page of ``tasktrail.dashboard`` timed against
a month of a busy installation in PostgreSQL (1,000,000 jobs and 10,000,000 events by
default), and the plan of every statement the pages run.

1. A fresh schema (``?schema=bench_dashboard_…``, dropped after unless
   ``--dashboard-keep``), tasktrail's tables installed by the app's own setup, twelve
   schedules added through ``app.schedules``, then filled with set-based SQL
   (:mod:`bench.dashboard_data` says what the data is) and ``VACUUM ANALYZE``.
2. The dashboard (``create_app(app)``) served in process by Starlette's ``TestClient``;
   each page of :data:`PAGES` requested ``--dashboard-requests`` times (50), the pages
   in turn, each request with other ids and filters drawn from the data (seeded), after
   one warm-up request each. Server time: from the request reaching the ASGI app to its
   last body byte sent (an ASGI wrapper), redirects of ``/search`` included; the
   client's wall time is kept alongside. A page stops early after
   ``Sizes.dashboard_page_seconds`` if it has 5 requests by then.
3. Meanwhile every statement the app sends is timed (``psycopg.Cursor.execute`` wrapped
   in this process). Then each page is requested 3 more times with ``auto_explain``
   loaded in the app's own session (``log_min_duration = 0``, ``log_analyze``,
   ``log_buffers``, ``log_nested_statements``, ``log_settings``; the plans come back as
   notices), so that each plan is the one PostgreSQL runs for the dashboard: generic
   plans (``plan_cache_mode = force_generic_plan``) and ``jit = off``, as the backend
   sets them. A page fails the check if any plan has a ``Seq Scan`` on jobs or events.
4. Written: ``bench/results/dashboard-<date>.md`` (the table of pages, the statements
   with a Seq Scan on jobs or events or slower than 20 ms at p95, with their plans'
   key lines) and ``bench/results/dashboard-<date>-plans.txt`` (every plan). The main
   table gets one row per page.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from bench import dashboard_data as data
from bench.config import PG_DSN, ROOT
from bench.harness import (
    Failure,
    Figure,
    LoadedPeer,
    attempt,
    fmt_number,
    loadavg,
    machine_line,
)
from bench.peers.tasktrail_peer import latency_summary

if TYPE_CHECKING:
    import psycopg
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    import tasktrail
    from bench.scenarios import Context, Sizes

#: Targets of issue 18: every page's p95, and the business object's page.
PAGE_TARGET_MS = 100.0
REF_TARGET_MS = 50.0
#: Statements slower than this at p95 are listed with their plans.
SLOW_STATEMENT_MS = 20.0
#: And those that read this many rows of jobs or events in one run (a scan by another
#: name: an index walked past most of the table, or one look-up per row of a big set).
MANY_ROWS = 100_000
#: Requests of each page with auto_explain on.
EXPLAIN_REQUESTS = 3
#: Requests a page keeps at least when it stops early (past its time budget).
MIN_REQUESTS = 5
#: The tables whose sequential scan fails a page.
QUEUE_TABLES = ("jobs", "events")
RESULTS = ROOT / "bench" / "results"


# -- the pages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Samples:
    """Ids and names drawn from the data, for the pages' URLs."""

    max_id: int
    websites: tuple[str, ...]  # websites with jobs, not among the busy ones
    busy_websites: tuple[str, ...]
    articles: tuple[str, ...]  # refs of articles.extract jobs (a translate below each)
    tree_jobs: tuple[int, ...]  # jobs in a tree (a root's follow-ups and below)
    workers: tuple[int, ...]
    schedules: tuple[str, ...]
    tasks: tuple[str, ...]  # tasks with 2 % of the jobs or more
    #: (jobs with the ref, follow-ups below them) on average: websites, busy websites
    website_jobs: tuple[float, float] = (0.0, 0.0)
    busy_jobs: tuple[float, float] = (0.0, 0.0)


Url = Callable[[Samples, random.Random], str]


@dataclass(frozen=True)
class Page:
    """One row of the table: a page, the URLs that exercise it and its target."""

    key: str
    label: str
    url: Url
    target_ms: float = PAGE_TARGET_MS


def _pick(rng: random.Random, items: Sequence[Any]) -> Any:
    return items[rng.randrange(len(items))]


def _job_id(samples: Samples, rng: random.Random) -> int:
    return rng.randint(1, samples.max_id)


def _url(template: str, **pickers: Callable[[Samples, random.Random], Any]) -> Url:
    def build(samples: Samples, rng: random.Random) -> str:
        return template.format(**{name: pick(samples, rng) for name, pick in pickers.items()})

    return build


def _choice(*options: str) -> Callable[[Samples, random.Random], str]:
    return lambda samples, rng: str(_pick(rng, options))


_website = lambda s, r: _pick(r, s.websites)  # noqa: E731
_busy = lambda s, r: _pick(r, s.busy_websites)  # noqa: E731
_any_website = lambda s, r: _pick(r, s.busy_websites if r.random() < 0.2 else s.websites)  # noqa: E731
_task = lambda s, r: _pick(r, s.tasks)  # noqa: E731

PAGES: tuple[Page, ...] = (
    Page("overview", "/ (overview)", _url("/")),
    Page("ref", "/refs/website/{id}: a website", _url("/refs/website/{w}", w=_website),
         REF_TARGET_MS),
    Page("ref_busy", "/refs/website/{id}: one of the 50 busy websites (the newest 500 of "
         "its jobs shown)", _url("/refs/website/{w}", w=_busy), REF_TARGET_MS),
    Page("ref_article", "/refs/article/{id}: an extracted article and its translation",
         _url("/refs/article/{a}", a=lambda s, r: _pick(r, s.articles)), REF_TARGET_MS),
    Page("jobs", "/jobs (no filter, first page)", _url("/jobs")),
    Page("jobs_before", "/jobs?before={id} (a page anywhere in the list)",
         _url("/jobs?before={b}", b=_job_id)),
    Page("jobs_task", "/jobs?task={task} (a task with 2 % of the jobs or more)",
         _url("/jobs?task={t}", t=_task)),
    Page("jobs_task_before", "/jobs?task={task}&before={id}",
         _url("/jobs?task={t}&before={b}", t=_task, b=_job_id)),
    Page("jobs_rare_task", f"/jobs?task={data.RARE_TASK} (0.07 % of the jobs)",
         _url(f"/jobs?task={data.RARE_TASK}")),
    Page("jobs_queue", "/jobs?queue={queue}&before={id}",
         _url("/jobs?queue={q}&before={b}", q=_choice(*data.QUEUES), b=_job_id)),
    Page("jobs_final", "/jobs?status=failed or cancelled, &before={id} half the time",
         lambda s, r: f"/jobs?status={_pick(r, ('failed', 'cancelled'))}"
         + (f"&before={_job_id(s, r)}" if r.random() < 0.5 else "")),
    Page("jobs_active", "/jobs?status=queued, running or reserved,running",
         _url("/jobs?status={st}", st=_choice("queued", "running", "reserved,running"))),
    Page("jobs_ref", "/jobs?ref=website:{id}", _url("/jobs?ref=website:{w}", w=_any_website)),
    Page("jobs_worker", "/jobs?worker={id} (any of the 64 workers; 60 stopped or lost)",
         _url("/jobs?worker={w}", w=lambda s, r: _pick(r, s.workers))),
    Page("jobs_task_failed", "/jobs?task={task}&status=failed",
         _url("/jobs?task={t}&status=failed", t=_task)),
    Page("jobs_since", "/jobs?since=15m or 1h, by queue half the time",
         lambda s, r: f"/jobs?since={_pick(r, ('15m', '1h'))}"
         + (f"&queue={_pick(r, data.QUEUES)}" if r.random() < 0.5 else "")),
    Page("jobs_until", "/jobs?until=7d or 20d (older than that)",
         _url("/jobs?until={u}", u=_choice("7d", "20d"))),
    Page("job", "/jobs/{id} (any job)", _url("/jobs/{j}", j=_job_id)),
    Page("job_tree", "/jobs/{id} (a job in a tree of 20)",
         _url("/jobs/{j}", j=lambda s, r: _pick(r, s.tree_jobs))),
    Page("tasks", "/tasks (window 1h)", _url("/tasks")),
    Page("tasks_15m", "/tasks?window=15m", _url("/tasks?window=15m")),
    Page("tasks_1d", "/tasks?window=1d", _url("/tasks?window=1d")),
    Page("tasks_7d", "/tasks?window=7d", _url("/tasks?window=7d")),
    Page("workers", "/workers", _url("/workers")),
    Page("schedules", "/schedules", _url("/schedules")),
    Page("schedule", "/schedules?name={name} (its ledger)",
         _url("/schedules?name={n}", n=lambda s, r: _pick(r, s.schedules))),
    Page("metrics", "/metrics", _url("/metrics")),
    Page("search_ref", "/search?q=website:{id} → its page", _url("/search?q=website:{w}",
         w=_any_website)),
    Page("search_job", "/search?q={id} → the job", _url("/search?q={j}", j=_job_id)),
    Page("search_task", "/search?q={task} → its jobs", _url("/search?q={t}", t=_task)),
)  # fmt: skip


def figures(sizes: Sizes) -> list[Figure]:
    """The scenario's rows of the main table (text cells in the tasktrail column)."""
    rows = [
        Figure(
            "dashboard.fill",
            f"dashboard: fill {sizes.dashboard_jobs:,} jobs and {sizes.dashboard_events:,} "
            "events (set-based SQL, indexes, VACUUM ANALYZE)",
            "s",
            better=None,
        )
    ]
    rows += [
        Figure(
            f"dashboard.{page.key}",
            f"dashboard: {page.label}: server time p50 / p95 / max "
            f"(target p95 ≤ {page.target_ms:g} ms)",
            "ms",
            better=None,
        )
        for page in PAGES
    ]
    rows.append(
        Figure(
            "dashboard.seq_scans",
            "dashboard: pages whose statements' plans have a Seq Scan on jobs or events",
            "",
            better=None,
        )
    )
    return rows


# -- tracing the SQL -----------------------------------------------------------------------


@dataclass
class Execution:
    """One statement the app sent during a page's request."""

    page: str
    text: str  # as sent to psycopg, whitespace collapsed
    params: Any
    seconds: float
    plans: list[str] = field(default_factory=list)  # auto_explain messages (explain pass)


_AUTO_EXPLAIN = (
    "LOAD 'auto_explain'",
    "SET auto_explain.log_min_duration = 0",
    "SET auto_explain.log_analyze = on",
    "SET auto_explain.log_buffers = on",
    "SET auto_explain.log_timing = on",
    "SET auto_explain.log_nested_statements = on",
    "SET auto_explain.log_settings = on",
    "SET auto_explain.log_format = text",
    "SET client_min_messages = log",
)
_AUTO_EXPLAIN_OFF = ("SET auto_explain.log_min_duration = -1", "SET client_min_messages = notice")


class Tracer:
    """Wraps ``psycopg.Cursor.execute`` in this process (the backend's reads, raw cursors
    included, all go through it): while a page is being requested, each statement is
    timed and recorded; with ``explain`` on, the connection it runs on gets auto_explain
    first and the plans it reports as notices during the statement are kept with it."""

    def __init__(self) -> None:
        self.page: str | None = None
        self.explain = False
        self.timed: list[Execution] = []
        self.explained: list[Execution] = []
        self._request: list[Execution] = []
        self._notices: list[str] = []
        self._instrumented: list[psycopg.Connection[Any]] = []
        self._real: Any = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[Tracer]:
        import psycopg

        real = psycopg.Cursor.execute
        self._real = real
        tracer = self

        def execute(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            if tracer.page is None:
                return real(cursor, query, params, **kwargs)
            if tracer.explain:
                tracer._instrument(cursor.connection)
            seen = len(tracer._notices)
            began = time.perf_counter()
            try:
                return real(cursor, query, params, **kwargs)
            finally:
                elapsed = time.perf_counter() - began
                tracer._record(query, params, elapsed, tracer._notices[seen:])

        psycopg.Cursor.execute = execute  # type: ignore[method-assign, assignment]
        try:
            yield self
        finally:
            psycopg.Cursor.execute = real  # type: ignore[method-assign]
            for conn in self._instrumented:
                with contextlib.suppress(Exception):
                    for statement in _AUTO_EXPLAIN_OFF:
                        real(conn.cursor(), statement)
            self._instrumented.clear()

    def _instrument(self, conn: psycopg.Connection[Any]) -> None:
        if any(known is conn for known in self._instrumented):
            return
        for statement in _AUTO_EXPLAIN:
            self._real(conn.cursor(), statement)
        conn.add_notice_handler(lambda diag: self._notices.append(diag.message_primary or ""))
        self._instrumented.append(conn)

    def _record(self, query: Any, params: Any, seconds: float, notices: list[str]) -> None:
        if isinstance(query, bytes):
            text = query.decode()
        elif isinstance(query, str):
            text = query
        else:  # a psycopg.sql.Composed: not used by the backend's reads
            text = repr(query)
        execution = Execution(
            self.page or "", " ".join(text.split()), params, seconds, list(notices)
        )
        self._request.append(execution)
        (self.explained if self.explain else self.timed).append(execution)

    @contextlib.contextmanager
    def request(self, page: str) -> Iterator[list[Execution]]:
        """Record the statements of one request of ``page``: the list yielded fills as
        the request runs."""
        self.page, self._request = page, []
        request = self._request
        try:
            yield request
        finally:
            self.page = None


class ServerTimer:
    """An ASGI wrapper that times each HTTP request from its arrival to its last body
    message: the server's own time, whatever the client adds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.spans: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()

        async def timed(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.spans.append(time.perf_counter() - began)

        await self.app(scope, receive, timed)


# -- timing the pages ----------------------------------------------------------------------


@dataclass
class PageRun:
    """The requests of one page."""

    page: Page
    urls: list[str] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    client: list[float] = field(default_factory=list)
    sql: list[float] = field(default_factory=list)  # statement time per request
    statements: list[int] = field(default_factory=list)
    error: str | None = None


def _get(client: Any, timer: ServerTimer, url: str) -> tuple[float, float]:
    """Request ``url`` (following redirects); (server seconds, client seconds)."""
    spans = len(timer.spans)
    began = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - began
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]!r}")
    return sum(timer.spans[spans:]), elapsed


def time_pages(
    client: Any,
    timer: ServerTimer,
    tracer: Tracer,
    samples: Samples,
    requests: int,
    budget: float,
    rng: random.Random,
    log: Callable[[str], None],
) -> dict[str, PageRun]:
    """Each page ``requests`` times, in turn (one warm-up each first, not counted)."""
    runs = {page.key: PageRun(page) for page in PAGES}
    for run in runs.values():
        try:
            _get(client, timer, run.page.url(samples, rng))
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            log(f"dashboard: {run.page.key}: {run.error}")
    spent = dict.fromkeys(runs, 0.0)
    active = [run for run in runs.values() if run.error is None]
    round_ = 0
    while active:
        round_ += 1
        for run in list(active):
            url = run.page.url(samples, rng)
            try:
                with tracer.request(run.page.key) as statements:
                    server, wall = _get(client, timer, url)
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"
                log(f"dashboard: {run.page.key}: {run.error}")
                active.remove(run)
                continue
            run.urls.append(url)
            run.server.append(server)
            run.client.append(wall)
            run.sql.append(sum(e.seconds for e in statements))
            run.statements.append(len(statements))
            spent[run.page.key] += wall
            count = len(run.server)
            if count >= requests or (spent[run.page.key] >= budget and count >= MIN_REQUESTS):
                active.remove(run)
        if round_ % 10 == 0 or not active:
            log(f"dashboard: round {round_}: {len(active)} pages still being timed")
    return runs


def explain_pages(
    client: Any, timer: ServerTimer, tracer: Tracer, samples: Samples, rng: random.Random
) -> None:
    """Each page :data:`EXPLAIN_REQUESTS` times with auto_explain on (plans in
    ``tracer.explained``)."""
    tracer.explain = True
    try:
        for page in PAGES:
            for _ in range(EXPLAIN_REQUESTS):
                with contextlib.suppress(Exception), tracer.request(page.key):
                    _get(client, timer, page.url(samples, rng))
    finally:
        tracer.explain = False


# -- reading plans (pure) --------------------------------------------------------------------

_DURATION = re.compile(r"^duration: ([0-9.]+) ms\s+plan:\s*\n")
_NODE = re.compile(r"\(cost=\d")
_COST = re.compile(r"\s*\(cost=[^)]*\)")
_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")
_SCAN = re.compile(
    r"(?:Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan|Tid Scan)(?: Backward)?"
    r"(?: using \w+)? on (\w+).*\(actual time=\S+ rows=(\d+) loops=(\d+)\)"
)
_REMOVED = re.compile(r"Rows Removed by (?:Filter|Index Recheck): (\d+)")


@dataclass(frozen=True)
class Plan:
    """One auto_explain message: its duration, the statement and the plan's lines."""

    ms: float
    query: str
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def seq_scans(self) -> list[str]:
        return _SEQ_SCAN.findall(self.text)

    def rows_read(self) -> dict[str, int]:
        """Rows each relation's scans read: (rows returned + rows removed by a filter or
        recheck) × loops, summed over its scan nodes (EXPLAIN shows both per loop)."""
        totals: dict[str, int] = {}
        node: list[Any] | None = None  # relation, rows, loops, removed

        def flush() -> None:
            if node is not None:
                relation, rows, loops, removed = node
                totals[relation] = totals.get(relation, 0) + (rows + removed) * loops

        for line in self.lines:
            if _NODE.search(line):
                flush()
                found = _SCAN.search(line)
                node = (
                    [found.group(1), int(found.group(2)), int(found.group(3)), 0] if found else None
                )
            elif node is not None and (removed := _REMOVED.search(line)):
                node[3] += int(removed.group(1))
        flush()
        return totals

    @property
    def queue_rows(self) -> int:
        """Rows of jobs and events read."""
        return sum(n for relation, n in self.rows_read().items() if relation in QUEUE_TABLES)


def parse_plan(message: str) -> Plan | None:
    """An auto_explain message (``duration: … ms  plan:``, ``Query Text: …``, the plan in
    text format) as a :class:`Plan`; None for any other message. The plan begins at the
    first line with a cost."""
    found = _DURATION.match(message)
    if found is None:
        return None
    lines = message[found.end() :].rstrip().split("\n")
    start = next((i for i, line in enumerate(lines) if _NODE.search(line)), len(lines))
    query = "\n".join(lines[:start]).strip().removeprefix("Query Text:").strip()
    return Plan(float(found.group(1)), query, tuple(lines[start:]))


def key_lines(plan: Plan, limit: int = 40) -> list[str]:
    """The plan's lines without the cost estimates (the actual times and rows stay)."""
    lines = [_COST.sub("", line) for line in plan.lines]
    if len(lines) > limit:
        lines = [*lines[:limit], f"… ({len(lines) - limit} more lines in the plans file)"]
    return lines


def top_plan(execution: Execution) -> Plan | None:
    """The plan of the statement itself: the last message (nested statements, such as a
    function's, are reported before the statement that called them)."""
    plans = [p for p in (parse_plan(m) for m in execution.plans) if p is not None]
    return plans[-1] if plans else None


def all_plans(execution: Execution) -> list[Plan]:
    return [p for p in (parse_plan(m) for m in execution.plans) if p is not None]


def percentile_ms(values: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p95, max) of seconds, in milliseconds."""
    summary = latency_summary(list(values))
    return summary.p50 * 1000, summary.p95 * 1000, summary.max * 1000


@dataclass
class Statement:
    """One distinct statement text: its executions in the timed requests, and the
    explain pass's plans."""

    text: str
    timed: list[Execution] = field(default_factory=list)
    explained: list[Execution] = field(default_factory=list)

    @property
    def pages(self) -> list[str]:
        return list(dict.fromkeys(e.page for e in [*self.timed, *self.explained]))

    def ms(self, page: str | None = None) -> tuple[float, float, float] | None:
        values = [e.seconds for e in self.timed if page is None or e.page == page]
        return percentile_ms(values) if values else None

    def seq_scans(self, page: str | None = None) -> list[str]:
        """Relations a plan of this statement reads with a Seq Scan (any run)."""
        found: dict[str, None] = {}
        for execution in self.explained:
            if page is None or execution.page == page:
                for plan in all_plans(execution):
                    found.update(dict.fromkeys(plan.seq_scans))
        return list(found)

    def queue_seq_scans(self, page: str | None = None) -> list[str]:
        return [r for r in self.seq_scans(page) if r in QUEUE_TABLES]

    def queue_rows(self, page: str | None = None) -> int:
        """The most rows of jobs and events one run of it read (its nested statements'
        included)."""
        return max(
            (
                sum(plan.queue_rows for plan in all_plans(e))
                for e in self.explained
                if page is None or e.page == page
            ),
            default=0,
        )

    def worst(self) -> tuple[Execution, Plan] | None:
        """The explained run whose own plan took longest, preferring one with a Seq Scan
        on jobs or events if any run had one."""
        runs = [(e, p) for e in self.explained if (p := top_plan(e)) is not None]
        if not runs:
            return None
        scanning = [
            (e, p)
            for e, p in runs
            if any(r in QUEUE_TABLES for plan in all_plans(e) for r in plan.seq_scans)
        ]
        return max(scanning or runs, key=lambda run: run[1].ms)

    def flagged(self) -> bool:
        timing = self.ms()
        return (
            bool(self.queue_seq_scans())
            or (timing is not None and timing[1] > SLOW_STATEMENT_MS)
            or self.queue_rows() >= MANY_ROWS
        )


def statements_of(timed: Sequence[Execution], explained: Sequence[Execution]) -> list[Statement]:
    """The distinct statements, slowest p95 first."""
    found: dict[str, Statement] = {}
    for execution in timed:
        found.setdefault(execution.text, Statement(execution.text)).timed.append(execution)
    for execution in explained:
        found.setdefault(execution.text, Statement(execution.text)).explained.append(execution)
    return sorted(found.values(), key=lambda s: -(s.ms() or (0.0, 0.0, 0.0))[1])


class Labeller:
    """Short names for statements: each part that is one of the backend's named
    statements (``tasktrail/sql/postgres/queries.sql``) becomes ``«name»``; the schema
    name is left out."""

    def __init__(self, schema: str) -> None:
        from tasktrail.backends.postgres.sql import native_queries, rendered_queries

        parts: dict[str, str] = {}
        for name, text in rendered_queries(schema).items():
            parts.setdefault(" ".join(text.split()), name)
        for name, native in native_queries(schema).items():
            parts.setdefault(" ".join(native.text.split()), name)
        # the longest first, so that a statement is named by its biggest known part
        self.parts = sorted(parts.items(), key=lambda item: -len(item[0]))
        self.schema = schema

    def __call__(self, text: str, limit: int | None = 160) -> str:
        for known, name in self.parts:
            if len(known) > 20 and known in text:
                text = text.replace(known, f"«{name}»")
        text = text.replace(f'"{self.schema}".', "")
        if limit is not None and len(text) > limit:
            text = text[: limit - 1] + "…"
        return text


# -- the report ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything one run of the scenario found."""

    schema: str
    sizes: tuple[int, int]  # jobs, events made (of a reused schema: the planner's estimates)
    fill: data.FillReport | None  # None: a schema filled earlier was reused
    fill_ended: datetime | None
    timing_began: datetime
    runs: dict[str, PageRun]
    samples: Samples
    statements: list[Statement]
    label: Labeller
    requests: int
    kept: bool


def _verdict(run: PageRun) -> str:
    if run.error is not None:
        return "error"
    if not run.server:
        return "—"
    return "pass" if percentile_ms(run.server)[1] <= run.page.target_ms else "**FAIL**"


def page_seq_scans(outcome: Outcome, page: str) -> list[tuple[Statement, list[str]]]:
    found = []
    for statement in outcome.statements:
        relations = statement.queue_seq_scans(page)
        if relations:
            found.append((statement, relations))
    return found


def _ms(value: float) -> str:
    return fmt_number(value, 1 if value >= 10 else 2)


def page_table(outcome: Outcome) -> str:
    header = (
        "| page | requests | p50 (ms) | p95 (ms) | max (ms) | client p50 (ms) | SQL p50 (ms) | "
        "statements | target p95 | verdict | Seq Scan on jobs/events | rows of jobs/events read "
        "(most by one statement) | slowest statement (p95 ms) |"
    )
    lines = [header, "|:---|---:|---:|---:|---:|---:|---:|---:|---:|:---|:---|---:|:---|"]
    for run in outcome.runs.values():
        page = run.page
        if not run.server:
            lines.append(
                f"| {page.label} | 0 | — | — | — | — | — | — | {page.target_ms:g} | "
                f"{_verdict(run)}: {run.error or ''} | — | — | — |"
            )
            continue
        p50, p95, worst = percentile_ms(run.server)
        client = statistics.median(run.client) * 1000
        sql = statistics.median(run.sql) * 1000
        scans = page_seq_scans(outcome, page.key)
        scan_text = (
            "none"
            if not scans
            else "**"
            + "; ".join(f"{', '.join(r)} in {outcome.label(s.text, 50)}" for s, r in scans)
            + "**"
        )
        slowest = max(
            (s for s in outcome.statements if s.ms(page.key) is not None),
            key=lambda s: s.ms(page.key)[1],  # type: ignore[index]
            default=None,
        )
        slowest_text = (
            "—"
            if slowest is None
            else f"{_ms(slowest.ms(page.key)[1])} `{outcome.label(slowest.text, 70)}`"  # type: ignore[index]
        )
        rows = max((s.queue_rows(page.key) for s in outcome.statements), default=0)
        cells = [
            page.label, str(len(run.server)), _ms(p50), _ms(p95), _ms(worst), _ms(client),
            _ms(sql), f"{statistics.median(run.statements):g}", f"{page.target_ms:g}",
            _verdict(run), scan_text, f"{rows:,}", slowest_text,
        ]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _params_text(params: Any, limit: int = 300) -> str:
    text = repr(params)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def flagged_section(outcome: Outcome) -> list[str]:
    lines: list[str] = []
    flagged = [s for s in outcome.statements if s.flagged()]
    if not flagged:
        return [
            f"No statement has a Seq Scan on jobs or events, a p95 above "
            f"{SLOW_STATEMENT_MS:g} ms or a run reading {MANY_ROWS:,} of their rows."
        ]
    for index, statement in enumerate(flagged, start=1):
        timing = statement.ms()
        scans = statement.queue_seq_scans()
        why = []
        if scans:
            why.append(f"**Seq Scan on {', '.join(scans)}**")
        if timing is not None and timing[1] > SLOW_STATEMENT_MS:
            why.append(f"p95 {_ms(timing[1])} ms > {SLOW_STATEMENT_MS:g} ms")
        rows = statement.queue_rows()
        if rows >= MANY_ROWS:
            why.append(f"reads {rows:,} rows of jobs/events in one run")
        per_page = []
        for page in statement.pages:
            page_ms = statement.ms(page)
            calls = [e for e in statement.timed if e.page == page]
            requests = len(outcome.runs[page].server) if page in outcome.runs else 0
            if page_ms is not None:
                per_page.append(
                    f"`{page}` ({len(calls) / max(1, requests):g} per request; p50 "
                    f"{_ms(page_ms[0])}, p95 {_ms(page_ms[1])}, max {_ms(page_ms[2])} ms)"
                )
            else:
                per_page.append(f"`{page}`")
        lines.append(f"### {index}. {'; '.join(why)}")
        lines.append("")
        lines.append(f"- statement: `{outcome.label(statement.text, None)}`")
        lines.append(f"- pages: {', '.join(per_page)}")
        worst = statement.worst()
        if worst is not None:
            execution, plan = worst
            other = sorted(set(statement.seq_scans()) - set(QUEUE_TABLES))
            lines.append(
                f"- plan under auto_explain (page `{execution.page}`, {plan.ms:.1f} ms with "
                f"instrumentation, parameters {_params_text(execution.params)})"
                + (f"; other Seq Scans: {', '.join(other)}" if other else "")
                + ":"
            )
            lines.append("")
            lines.append("```")
            lines.extend(key_lines(plan))
            lines.append("```")
        lines.append("")
    return lines


def plans_text(outcome: Outcome) -> str:
    """Every page's statements with their plans (the slowest run of each, and any run
    with a Seq Scan on jobs or events), for the plans file."""
    out = [
        f"Plans of the dashboard's statements (auto_explain: log_analyze, log_buffers, "
        f"generic plans as on the backend's connection), schema {outcome.schema}.",
        f"{outcome.sizes[0]:,} jobs and {outcome.sizes[1]:,} events.",
        "",
    ]
    for run in outcome.runs.values():
        page = run.page
        out.append("=" * 100)
        out.append(f"PAGE {page.key}: {page.label}")
        out.append("=" * 100)
        for statement in outcome.statements:
            executions = [e for e in statement.explained if e.page == page.key]
            if not executions:
                continue
            timing = statement.ms(page.key)
            out.append("")
            out.append("-" * 100)
            out.append(f"statement: {outcome.label(statement.text, None)}")
            if timing is not None:
                out.append(
                    f"timed runs (no auto_explain): p50 {timing[0]:.2f} ms, "
                    f"p95 {timing[1]:.2f} ms, max {timing[2]:.2f} ms"
                )
            shown: list[tuple[Execution, Plan]] = []
            ranked = [(e, p) for e in executions if (p := top_plan(e)) is not None]
            if ranked:
                shown.append(max(ranked, key=lambda run: run[1].ms))
            for e, p in ranked:
                if any(r in QUEUE_TABLES for plan in all_plans(e) for r in plan.seq_scans) and all(
                    e is not s for s, _ in shown
                ):
                    shown.append((e, p))
                    break
            for execution, _ in shown:
                out.append(f"parameters: {_params_text(execution.params, 2000)}")
                for plan in all_plans(execution):
                    out.append(f"duration: {plan.ms:.3f} ms")
                    if plan.query and plan.query != statement.text:
                        out.append(f"query: {' '.join(plan.query.split())}")
                    out.extend(plan.lines)
                    out.append("")
    return "\n".join(out) + "\n"


def _fill_text(fill: data.FillReport) -> str:
    steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in fill.seconds.items())
    statuses = ", ".join(f"{status} {count:,}" for status, count in fill.by_status.items())
    return (
        f"{fill.jobs:,} jobs ({statuses}; {fill.trees:,} trees of 20) and {fill.events:,} "
        f"events, {fill.size} with indexes, made in {fill.total:.0f} s ({steps})"
    )


def render(outcome: Outcome, command: str, began: datetime, load: tuple[str, str]) -> str:
    runs = list(outcome.runs.values())
    failing = [r for r in runs if _verdict(r) != "pass"]
    scanning = [r for r in runs if page_seq_scans(outcome, r.page.key)]
    jobs, events = outcome.sizes
    lines = [
        f"# Dashboard speed at {jobs:,} jobs and {events:,} events (issue 18)",
        "",
        f"Targets: every page's server time p95 ≤ {PAGE_TARGET_MS:g} ms, the business "
        f"object's page (`/refs/…`, with its descendants) ≤ {REF_TARGET_MS:g} ms; no plan "
        "with a sequential scan of `jobs` or `events`.",
        "",
        f"**{len(runs) - len(failing)} of {len(runs)} pages pass their target**"
        + (f"; failing: {', '.join(f'`{r.page.key}`' for r in failing)}" if failing else "")
        + f". **{len(scanning)} pages run a statement with a Seq Scan on jobs or events**"
        + (f": {', '.join(f'`{r.page.key}`' for r in scanning)}" if scanning else "")
        + ".",
        "",
    ]
    if outcome.fill is not None:
        lines.append(f"Data: {_fill_text(outcome.fill)}. See `bench/dashboard_data.py`.")
    else:
        lines.append(f"Data: the schema `{outcome.schema}` filled by an earlier run (reused).")
    (direct, below), (busy, busy_below) = outcome.samples.website_jobs, outcome.samples.busy_jobs
    lines += [
        "",
        f"A website has {direct:,.0f} jobs with its ref and {below:,.0f} follow-ups below "
        f"them on average; each of the {data.HOT_WEBSITES} busy ones {busy:,.0f} and "
        f"{busy_below:,.0f} (its page shows the newest {500}).",
    ]
    lag = (
        f" Timing began {(outcome.timing_began - outcome.fill_ended).total_seconds() / 60:.1f} "
        "min after the fill (the data's last hour is that much older)."
        if outcome.fill_ended is not None
        else ""
    )
    lines += [
        "",
        f"Each page requested up to {outcome.requests} times in turn with other ids and "
        "filters (seeded), in process (Starlette's TestClient), after a warm-up request; "
        "server time from the request's arrival in the ASGI app to its last byte "
        "(redirects of /search included), client p50 for comparison; SQL: the time of the "
        "request's statements in psycopg's `execute` (wrapped); statements: per request." + lag,
        "",
        page_table(outcome),
        "",
        f"## Statements with a Seq Scan on jobs or events, slower than {SLOW_STATEMENT_MS:g} ms "
        f"at p95, or reading {MANY_ROWS:,} rows of them or more",
        "",
        "Timings from the timed requests (no auto_explain); plans from "
        f"{EXPLAIN_REQUESTS} more requests per page with auto_explain (log_analyze, "
        "log_buffers) in the dashboard's own session: generic plans and jit off, as the "
        "backend's connection has them; the run shown is the slowest (or one with a Seq "
        "Scan). «name» stands for a statement of tasktrail/sql/postgres/queries.sql. Every "
        f"plan: `bench/results/{_plans_name(began)}`.",
        "",
        *flagged_section(outcome),
        f"**Machine**: {machine_line()}; load average {load[0]} at the start, {load[1]} at the end.",
        "",
        f"**Date**: {began:%Y-%m-%d %H:%M} UTC. **Command**: `{command}`"
        + (f"; the schema `{outcome.schema}` was kept." if outcome.kept else "."),
    ]
    return "\n".join(lines) + "\n"


def _report_name(began: datetime) -> str:
    return f"dashboard-{began:%Y-%m-%d}.md"


def _plans_name(began: datetime) -> str:
    return f"dashboard-{began:%Y-%m-%d}-plans.txt"


# -- the scenario --------------------------------------------------------------------------


def make_app(dsn: str) -> tasktrail.App:
    """An app that knows the data's tasks (no-ops: nothing runs them)."""
    import tasktrail

    app = tasktrail.App(dsn)
    for spec in data.TASKS:

        def work(*args: Any, **kwargs: Any) -> None:
            return None

        app.task(name=spec.name, queue=spec.queue, priority=spec.priority)(work)
    return app


def draw_samples(conn: psycopg.Connection[Any]) -> Samples:
    """Ids and names from the data for the URLs (``setseed``: the same on the same data)."""
    conn.execute("SELECT setseed(0.18)")

    def column(query: str, *params: Any) -> list[Any]:
        return [row[0] for row in conn.execute(query, params).fetchall()]

    [max_id] = column("SELECT max(id) FROM jobs")
    websites = column(
        "SELECT ref_id FROM (SELECT DISTINCT ref_id FROM jobs WHERE ref_type = 'website') AS w"
        " WHERE ref_id::integer > %s ORDER BY random() LIMIT 300",
        data.HOT_WEBSITES,
    )
    busy = column(
        "SELECT DISTINCT ref_id FROM jobs WHERE ref_type = 'website' AND ref_id::integer <= %s",
        data.HOT_WEBSITES,
    )
    articles = column(
        "SELECT ref_id FROM jobs WHERE task = 'articles.extract' ORDER BY random() LIMIT 300"
    ) or column("SELECT ref_id FROM jobs WHERE ref_type = 'article' ORDER BY random() LIMIT 300")
    tree_jobs = column("SELECT id FROM jobs WHERE root_id IS NOT NULL ORDER BY random() LIMIT 300")
    total = max(1, int(max_id or 1))
    tasks = column(
        "SELECT task FROM jobs GROUP BY task HAVING count(*) >= %s ORDER BY task", total // 50
    )

    def sizes(refs: list[str]) -> tuple[float, float]:
        [(direct, below)] = conn.execute(
            "SELECT coalesce(avg(d.n), 0), coalesce(avg(b.n), 0) FROM unnest(%s::text[]) AS w (id)"
            " CROSS JOIN LATERAL (SELECT count(*) AS n FROM jobs j"
            "  WHERE j.ref_type = 'website' AND j.ref_id = w.id) AS d"
            " CROSS JOIN LATERAL (SELECT count(*) AS n FROM jobs r JOIN jobs c ON c.root_id = r.id"
            "  WHERE r.ref_type = 'website' AND r.ref_id = w.id AND r.root_id IS NULL"
            "  AND (c.ref_type, c.ref_id) IS DISTINCT FROM ('website', w.id)) AS b",
            (refs,),
        ).fetchall()
        return float(direct), float(below)

    return Samples(
        max_id=total,
        websites=tuple(websites or busy),
        busy_websites=tuple(busy or websites),
        articles=tuple(articles),
        tree_jobs=tuple(tree_jobs) or (1,),
        workers=tuple(column("SELECT id FROM workers ORDER BY id")),
        schedules=tuple(column("SELECT name FROM schedules ORDER BY name")),
        tasks=tuple(tasks),
        website_jobs=sizes(websites[:50]),
        busy_jobs=sizes(busy),
    )


def measure(
    sizes: Sizes,
    log: Callable[[str], None],
    *,
    keep: bool = False,
    reuse: str | None = None,
) -> Outcome:
    """Fill a fresh schema (or reuse ``reuse``), time every page, capture the plans."""
    import psycopg
    from starlette.testclient import TestClient

    from tasktrail.dashboard import create_app

    schema = reuse or f"bench_dashboard_{os.getpid()}_{secrets.token_hex(3)}"
    separator = "&" if "?" in PG_DSN else "?"
    dsn = f"{PG_DSN}{separator}schema={schema}"
    app = make_app(dsn)
    fill: data.FillReport | None = None
    fill_ended: datetime | None = None
    try:
        app.backend  # noqa: B018 - installs (or migrates) tasktrail's schema
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            if reuse is None:
                for spec in data.schedule_specs():
                    app.schedules.add(**spec)
                now = datetime.now(timezone.utc)
                log(
                    f"dashboard: filling {schema} with {sizes.dashboard_jobs:,} jobs and "
                    f"about {sizes.dashboard_events:,} events"
                )
                fill = data.fill(conn, schema, sizes.dashboard_jobs, sizes.dashboard_events,
                                 now, log)  # fmt: skip
                fill_ended = datetime.now(timezone.utc)
                log(f"dashboard: {_fill_text(fill)}")
            conn.execute(f'SET search_path TO "{schema}"')
            samples = draw_samples(conn)
            if fill is not None:
                made = (fill.jobs, fill.events)
            else:
                [(jobs, events)] = conn.execute(
                    "SELECT (SELECT reltuples FROM pg_class WHERE oid = 'jobs'::regclass),"
                    " (SELECT reltuples FROM pg_class WHERE oid = 'events'::regclass)"
                ).fetchall()
                made = (int(jobs), int(events))
        tracer = Tracer()
        timer = ServerTimer(create_app(app))
        rng = random.Random(18)
        timing_began = datetime.now(timezone.utc)
        with tracer.installed(), TestClient(timer, follow_redirects=True) as client:
            log(f"dashboard: timing {len(PAGES)} pages, {sizes.dashboard_requests} requests each")
            runs = time_pages(client, timer, tracer, samples, sizes.dashboard_requests,
                              sizes.dashboard_page_seconds, rng, log)  # fmt: skip
            log("dashboard: capturing the plans (auto_explain)")
            explain_pages(client, timer, tracer, samples, rng)
        return Outcome(
            schema=schema,
            sizes=made,
            fill=fill,
            fill_ended=fill_ended,
            timing_began=timing_began,
            runs=runs,
            samples=samples,
            statements=statements_of(tracer.timed, tracer.explained),
            label=Labeller(schema),
            requests=sizes.dashboard_requests,
            kept=keep or reuse is not None,
        )
    finally:
        app.close()
        if not keep and reuse is None:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            log(f"dashboard: dropped {schema}")
        else:
            log(f"dashboard: kept the schema: {dsn}")


def run(ctx: Context, lp: LoadedPeer) -> None:
    """The scenario, for the harness: rows in the main table, the report files."""
    rows = {figure.key: figure for figure in figures(ctx.sizes)}
    began = datetime.now(timezone.utc)
    command = "python -m bench " + shlex.join(sys.argv[1:])
    load_before = loadavg()
    outcome = attempt(
        lambda: measure(ctx.sizes, ctx.log, keep=ctx.dashboard_keep, reuse=ctx.dashboard_schema),
        None,
        ctx.log,
        "dashboard",
    )
    if isinstance(outcome, Failure):
        for figure in rows.values():
            ctx.results.fail(figure, lp.key, outcome)
        ctx.results.note(f"dashboard: {outcome.kind}: {outcome.reason}")
        return
    if outcome.fill is not None:
        ctx.results.text(rows["dashboard.fill"], lp.key, f"{outcome.fill.total:.0f}")
        ctx.results.note(f"dashboard: {_fill_text(outcome.fill)}.")
    for run_ in outcome.runs.values():
        figure = rows[f"dashboard.{run_.page.key}"]
        if not run_.server:
            ctx.results.fail(figure, lp.key, Failure("error", run_.error or "no request"))
            ctx.results.note(f"dashboard, {run_.page.key}: {run_.error}")
            continue
        p50, p95, worst = percentile_ms(run_.server)
        verdict = "pass" if p95 <= run_.page.target_ms else "**FAIL**"
        ctx.results.text(figure, lp.key, f"{_ms(p50)} / {_ms(p95)} / {_ms(worst)} {verdict}")
    scanning = [key for key in outcome.runs if page_seq_scans(outcome, key)]
    ctx.results.text(
        rows["dashboard.seq_scans"], lp.key, ", ".join(scanning) if scanning else "none"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = RESULTS / _report_name(began)
    plans = RESULTS / _plans_name(began)
    report.write_text(render(outcome, command, began, (load_before, loadavg())))
    plans.write_text(plans_text(outcome))
    ctx.results.note(
        f"dashboard: the pages' table, the statements to fix and their plans: "
        f"{report.relative_to(ROOT)}; every plan: {plans.relative_to(ROOT)}. Measured once "
        "(--repeat does not apply: each page is requested many times instead)."
    )
    ctx.log(f"dashboard: written {report} and {plans}")
    print(report.read_text())
