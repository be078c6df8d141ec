"""The dashboard scenario's data: a month of a busy tasktrail installation, made with
set-based SQL (``INSERT … SELECT generate_series``) in a fresh PostgreSQL schema.

Job ``n`` has id ``n`` (ids follow creation time, as they do in a live table): the first
99 % were created over 30 days minus an hour, the last 1 % within the last hour (a busy
hour: about seven times the month's rate). Twenty tasks in three queues
(:data:`TASKS`). Ids go in blocks of 20; 30 % of the blocks made before the last 20
minutes are a tree: a ``websites.crawl`` root with a website ref, twelve
``articles.extract`` follow-ups (each an article ref), six ``articles.translate`` below
the first six of those, and a ``websites.notify`` (the website's ref again) enqueued
``after=`` the twelve extracts. The other jobs stand alone, of a task drawn by weight,
with a ref of the task's kind. One website ref in five goes to one of 50 busy websites
(``website:1`` to ``website:50``, about 2,000 jobs each at 1,000,000 jobs, with their
trees), the rest to ``website:1`` to ``website:10000``.

Jobs created in the last 15 minutes are active: 96 % queued, 3 % running, 1 % reserved,
held by the 4 running workers. The others are final: about 1 % of the standalone ones
cancelled before they began, 4 % failed (the standalone and follow-up ones), the rest
succeeded. Four in ten jobs were retried (failed attempts with a ``retry_scheduled``
after each, 10 s × attempt apart) as many times as needed to reach the events asked
for; within the last hour at most twice. Every attempt has its ``reserved``,
``started`` and end events with the worker (64 workers, 16 generations of 4 over the
month; the last 4 are running) and child pid; failures carry a traceback. Events are
inserted in time order, so a job's history is spread over the table as in a live one.
Twelve schedules (their ledger over the month), a paused queue. Secondary indexes of
jobs and events are dropped during the load and rebuilt from their definitions, then
``VACUUM ANALYZE`` (the state autovacuum keeps the tables in).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

#: Jobs per block of ids; a tree fills one block.
BLOCK = 20
#: Blocks (of those old enough) that are a tree, in percent.
TREE_PER_CENT = 30
#: The busy websites: website:1 … website:HOT_WEBSITES get one website ref in five.
HOT_WEBSITES = 50
WEBSITES = 10_000
#: Jobs created within this much of the end are active (queued, reserved, running).
ACTIVE = timedelta(minutes=15)
#: No tree is made this close to the end (its follow-ups would not have run yet).
TREE_MARGIN = timedelta(minutes=20)
#: Share of jobs retried at least once (when the events asked for need retries).
RETRIED_PER_MILLE = 400
#: Jobs per statement of the events' load (each one's events, sorted by time).
EVENT_CHUNK = 100_000
MONTH = timedelta(days=30)
HOUR = timedelta(hours=1)
#: Worker generations over the month (4 workers each; the last one is running).
GENERATIONS = 16


@dataclass(frozen=True)
class TaskSpec:
    """A task of the data: its queue, the kind of ref its jobs have (and how many
    distinct ones), its share of the standalone jobs (per mille), its typical run time
    and the error its failures report."""

    name: str
    queue: str
    ref_type: str | None
    ref_count: int
    per_mille: int
    run_seconds: float
    error: str
    priority: int = 0


#: The tree tasks first (indexes 1-4 in SQL), then the standalone ones.
TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("websites.crawl", "crawl", "website", WEBSITES, 0, 4.0, "TimeoutError: crawl took longer than 300 s"),
    TaskSpec("articles.extract", "default", "article", 0, 0, 0.8, "ValueError: no article body found"),
    TaskSpec("articles.translate", "default", "article", 0, 0, 2.5, "HTTPError: 429 Too Many Requests (translation API)"),
    TaskSpec("websites.notify", "mail", "website", WEBSITES, 0, 0.3, "SMTPRecipientsRefused: 550 mailbox unavailable", 5),
    TaskSpec("websites.check", "crawl", "website", WEBSITES, 300, 0.4, "ConnectionError: connection refused"),
    TaskSpec("websites.screenshot", "crawl", "website", WEBSITES, 120, 3.0, "TimeoutError: page did not load within 30 s"),
    TaskSpec("websites.sitemap", "crawl", "website", WEBSITES, 40, 8.0, "XMLSyntaxError: mismatched tag at line 812"),
    TaskSpec("websites.dns_check", "crawl", "website", WEBSITES, 60, 0.2, "NXDOMAIN: no such domain"),
    TaskSpec("mail.send", "mail", "user", 50_000, 150, 0.3, "SMTPServerDisconnected: connection unexpectedly closed", 5),
    TaskSpec("mail.digest", "mail", "user", 50_000, 20, 1.5, "TemplateError: 'articles' is undefined", 5),
    TaskSpec("billing.invoice", "default", "customer", 2_000, 30, 0.8, "PaymentProviderError: 502 Bad Gateway"),
    TaskSpec("billing.charge", "default", "customer", 2_000, 25, 1.2, "CardDeclined: insufficient funds"),
    TaskSpec("reports.build", "default", None, 0, 5, 45.0, "MemoryError"),
    TaskSpec("search.reindex", "default", "article", 200_000, 90, 0.6, "ConnectionError: search cluster unreachable"),
    TaskSpec("images.resize", "default", "article", 200_000, 60, 1.0, "UnidentifiedImageError: cannot identify image file"),
    TaskSpec("images.thumbnail", "default", "article", 200_000, 50, 0.4, "OSError: image file is truncated"),
    TaskSpec("users.sync", "default", "user", 50_000, 35, 2.0, "HTTPError: 503 Service Unavailable (CRM)"),
    TaskSpec("cache.warm", "default", None, 0, 12, 5.0, "ConnectionError: redis unreachable"),
    TaskSpec("analytics.rollup", "default", None, 0, 2, 60.0, "QueryCanceled: statement timeout"),
    TaskSpec("exports.csv", "default", "customer", 2_000, 1, 20.0, "PermissionError: bucket is read-only"),
)  # fmt: skip
QUEUES = ("crawl", "default", "mail")
#: A rarely used task (1 standalone job in 1,000): a filter that finds few jobs.
RARE_TASK = "exports.csv"


@dataclass(frozen=True)
class Layout:
    """When job ``n`` was created: ``jobs`` ids over the month that ends at ``now``, the
    last :data:`HOUR` holding 1 % of them."""

    jobs: int
    now: datetime

    @property
    def recent(self) -> int:
        """Jobs of the last hour."""
        return max(1, self.jobs // 100)

    @property
    def older(self) -> int:
        return self.jobs - self.recent

    @property
    def start(self) -> datetime:
        return self.now - MONTH

    @property
    def hour_start(self) -> datetime:
        return self.now - HOUR

    @property
    def step_old(self) -> float:
        """Seconds between two jobs before the last hour."""
        return (MONTH - HOUR).total_seconds() / max(1, self.older)

    @property
    def step_new(self) -> float:
        return HOUR.total_seconds() / self.recent

    def created(self, n: int) -> datetime:
        if n <= self.older:
            return self.start + timedelta(seconds=(n - 1) * self.step_old)
        return self.hour_start + timedelta(seconds=(n - self.older - 0.5) * self.step_new)

    def id_at(self, moment: datetime) -> int:
        """The last id created at or before ``moment`` (0 if none)."""
        if moment < self.start:
            return 0
        if moment < self.hour_start:
            return min(self.older, 1 + int((moment - self.start).total_seconds() / self.step_old))
        seconds = (moment - self.hour_start).total_seconds()
        return min(self.jobs, self.older + int(seconds / self.step_new + 0.5))


def attempt_plan(jobs: int, events: int) -> tuple[int, float]:
    """How jobs are retried to make about ``events`` events: (retried jobs per mille,
    the span of their attempt counts: a retried job has 2 + floor(u × span) attempts,
    u uniform in [0, 1)). A job of ``a`` attempts has 4a events (enqueued, and reserved,
    started and an end per attempt, a retry_scheduled after each failed one but the
    last)."""
    mean_attempts = max(1.0, events / max(1, jobs) / 4)
    if mean_attempts <= 1.0:
        return 0, 1.0
    share = RETRIED_PER_MILLE / 1000
    if mean_attempts < 1 + share:  # few retries: fewer retried jobs, twice each
        return round((mean_attempts - 1) * 1000), 1.0
    mean_retried = (mean_attempts - (1 - share)) / share
    return RETRIED_PER_MILLE, min(60.0, 2 * (mean_retried - 2) + 1)


def _single_of() -> list[int]:
    """1,000 slots, each the (1-based) index in TASKS of a standalone task, by weight."""
    slots = [index for index, spec in enumerate(TASKS, start=1) for _ in range(spec.per_mille)]
    if len(slots) != 1000:
        raise AssertionError(f"the standalone tasks' weights add up to {len(slots)}, not 1000")
    return slots


_HASH = """
CREATE FUNCTION pg_temp.fill_hash(n bigint, salt integer) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT hashint8($1 * 64 + $2)::bigint + 2147483648 $$
"""

# Layer by layer: ids and their hashes and creation times; the shape (tree or not) and
# task; refs, lineage, state and timings; attempts; the latest start; what follows from it.
_PLAN = """
CREATE UNLOGGED TABLE fill_jobs AS
SELECT a.*,
       CASE WHEN a.state IN ('succeeded', 'failed') THEN a.started_at + make_interval(secs => a.run_s)
            WHEN a.state = 'cancelled' THEN a.created_at + interval '30 seconds' END AS finished_at,
       CASE WHEN a.attempts >= 1 THEN 1 + a.gen * 4 + mod(a.h5 + a.attempts, 4)
            WHEN a.state = 'reserved' THEN 1 + a.gen * 4 + mod(a.h5 + 1, 4) END AS worker_id,
       'Traceback (most recent call last):' || chr(10)
           || '  File "/srv/app/' || replace(a.task, '.', '/') || '.py", line ' || (40 + a.ti)
           || ', in run' || chr(10) || '    return client.call(' || coalesce(a.ref_type, 'job')
           || '_id, timeout=30)' || chr(10) || a.error AS traceback
FROM (
    SELECT t.*,
           CASE WHEN t.attempts >= 1 THEN t.created_at + make_interval(secs =>
               t.attempts * t.wait_s + (t.attempts - 1) * t.run_s
               + t.backoff_s * (t.attempts - 1) * t.attempts / 2) END AS started_at
    FROM (
        SELECT s.*,
               CASE WHEN s.state IN ('queued', 'reserved', 'cancelled') THEN 0
                    WHEN s.state = 'running' THEN 1
                    WHEN mod(s.h4, 1000) >= %(retried_per_mille)s THEN 1
                    WHEN s.created_at >= %(hour_start)s THEN 2
                    ELSE 2 + floor(mod(s.h4 / 1000, 1000) / 1000.0 * %(attempt_span)s)::integer
               END AS attempts
        FROM (
            SELECT k.id, k.kind, k.ti, k.h1, k.h2, k.h5, k.created_at,
                   (%(names)s::text[])[k.ti] AS task,
                   (%(queues)s::text[])[k.ti] AS queue,
                   (%(priorities)s::integer[])[k.ti] AS priority,
                   (%(errors)s::text[])[k.ti] AS error,
                   (%(ref_types)s::text[])[k.ti] AS ref_type,
                   CASE WHEN k.kind IN ('root', 'notify') THEN k.tree_website::text
                        WHEN k.kind = 'child' THEN (k.blk * 12 + k.pos)::text
                        WHEN k.kind = 'grandchild' THEN (k.blk * 12 + k.pos - 12)::text
                        WHEN (%(ref_types)s::text[])[k.ti] IS NULL THEN NULL
                        WHEN (%(ref_types)s::text[])[k.ti] = 'website' THEN
                            (CASE WHEN mod(k.h2, 100) < 20 THEN 1 + mod(k.h2 / 100, %(hot)s)
                                  ELSE 1 + mod(k.h2 / 100, %(websites)s) END)::text
                        ELSE (1 + mod(k.h2 / 100, (%(ref_counts)s::integer[])[k.ti]))::text
                   END AS ref_id,
                   CASE WHEN k.kind IN ('single', 'root') THEN NULL
                        WHEN k.kind = 'grandchild' THEN k.blk * 20 + 1 + (k.pos - 12)
                        ELSE k.blk * 20 + 1 END AS parent_id,
                   CASE WHEN k.kind IN ('single', 'root') THEN NULL ELSE k.blk * 20 + 1 END AS root_id,
                   CASE WHEN k.created_at >= %(active_since)s THEN
                            CASE WHEN mod(k.h3, 100) < 3 THEN 'running'
                                 WHEN mod(k.h3, 100) = 3 THEN 'reserved' ELSE 'queued' END
                        WHEN k.kind = 'single' AND mod(k.h3, 1000) < 10 THEN 'cancelled'
                        WHEN k.kind IN ('single', 'child', 'grandchild') AND mod(k.h3, 1000) < 50
                            THEN 'failed'
                        ELSE 'succeeded' END AS state,
                   least(CASE WHEN k.created_at >= %(hour_start)s THEN 30 ELSE 1e9 END,
                         (%(runs)s::float8[])[k.ti] * (0.3 + mod(k.h2 / 7, 1400) / 1000.0)) AS run_s,
                   0.02 + mod(k.h3 / 1000, 2000) / 1000.0 AS wait_s,
                   10.0 AS backoff_s,
                   least(%(generations)s - 1, floor(extract(epoch FROM k.created_at - %(start)s)
                                                   / %(generation_seconds)s))::integer AS gen,
                   k.h4
            FROM (
                SELECT b.*,
                       CASE WHEN NOT b.in_tree THEN 'single' WHEN b.pos = 0 THEN 'root'
                            WHEN b.pos <= 12 THEN 'child' WHEN b.pos <= 18 THEN 'grandchild'
                            ELSE 'notify' END AS kind,
                       CASE WHEN NOT b.in_tree THEN (%(single_of)s::integer[])[1 + mod(b.h1, 1000)]
                            WHEN b.pos = 0 THEN 1 WHEN b.pos <= 12 THEN 2 WHEN b.pos <= 18 THEN 3
                            ELSE 4 END AS ti,
                       CASE WHEN mod(b.hb, 100) < 20 THEN 1 + mod(b.hb / 100, %(hot)s)
                            ELSE 1 + mod(b.hb / 100, %(websites)s) END AS tree_website
                FROM (
                    SELECT n AS id, (n - 1) / 20 AS blk, mod(n - 1, 20)::integer AS pos,
                           pg_temp.fill_hash(n, 1) AS h1, pg_temp.fill_hash(n, 2) AS h2,
                           pg_temp.fill_hash(n, 3) AS h3, pg_temp.fill_hash(n, 4) AS h4,
                           pg_temp.fill_hash(n, 8) AS h5,
                           pg_temp.fill_hash((n - 1) / 20, 5) AS hb,
                           mod(pg_temp.fill_hash((n - 1) / 20, 6), 100) < %(tree_per_cent)s
                               AND (n - 1) / 20 * 20 + 20 <= %(last_tree_id)s AS in_tree,
                           CASE WHEN n <= %(older)s
                                THEN %(start)s + make_interval(secs => (n - 1) * %(step_old)s)
                                ELSE %(hour_start)s
                                     + make_interval(secs => (n - %(older)s - 0.5) * %(step_new)s)
                           END AS created_at
                    FROM generate_series(1, %(jobs)s::bigint) AS n
                ) AS b
            ) AS k
        ) AS s
    ) AS t
) AS a
"""

_JOBS = """
INSERT INTO jobs (id, task, queue, status, ref_type, ref_id, priority, args, kwargs, attempts,
                  max_attempts, timeout, run_at, created_at, started_at, finished_at, worker_id,
                  result, error, parent_id, root_id, waiting_for, after_policy, dependents)
OVERRIDING SYSTEM VALUE
SELECT f.id, f.task, f.queue, f.state, f.ref_type, f.ref_id, f.priority,
       json_build_array(coalesce(f.ref_type || ':' || f.ref_id, f.id::text)),
       CASE WHEN mod(f.h1, 7) = 0 THEN '{"force": true}'::json ELSE '{}'::json END,
       f.attempts,
       CASE WHEN f.state = 'failed' THEN f.attempts ELSE greatest(f.attempts, 3) END,
       300.0,
       CASE WHEN f.attempts > 1 THEN f.started_at - make_interval(secs => f.wait_s)
            ELSE f.created_at END,
       f.created_at, f.started_at, f.finished_at, f.worker_id,
       CASE WHEN f.state = 'succeeded' THEN json_build_object('ok', true, 'items', mod(f.h1, 50)) END,
       CASE WHEN f.state = 'failed' THEN f.error END,
       f.parent_id, f.root_id,
       CASE WHEN f.kind = 'notify' THEN 0 END,
       CASE WHEN f.kind = 'notify' THEN 'finished' END,
       CASE WHEN f.kind = 'child' THEN 1 ELSE 0 END
FROM fill_jobs f
ORDER BY f.id
"""

# The twelve extracts a notify job waited for (after=, policy finished).
_JOB_AFTER = """
INSERT INTO job_after (job_id, after_id, after_status)
SELECT f.id, c.id, c.state
FROM fill_jobs f
JOIN fill_jobs c ON c.id BETWEEN f.root_id + 1 AND f.root_id + 12
WHERE f.kind = 'notify'
"""

_EVENTS = """
INSERT INTO events (job_id, at, kind, attempt, worker_id, detail, child_pid)
SELECT e.job_id, e.at, e.kind, e.attempt, e.worker_id, e.detail, e.child_pid
FROM (
    SELECT f.id AS job_id, f.created_at AS at, 'enqueued' AS kind, 0 AS attempt,
           NULL::bigint AS worker_id, NULL::json AS detail, NULL::integer AS child_pid
    FROM fill_jobs f WHERE f.id BETWEEN %(low)s AND %(high)s
    UNION ALL
    SELECT f.id, f.created_at + interval '1 ms', 'waiting', 0, NULL,
           json_build_object('after', (SELECT json_agg(x) FROM generate_series(f.root_id + 1,
                                                                              f.root_id + 12) AS x),
                             'policy', 'finished'), NULL
    FROM fill_jobs f WHERE f.kind = 'notify' AND f.id BETWEEN %(low)s AND %(high)s
    UNION ALL
    SELECT f.id, f.created_at + interval '2 ms', 'ready', 0, NULL,
           json_build_object('after', f.root_id + 12, 'after_status', 'succeeded'), NULL
    FROM fill_jobs f WHERE f.kind = 'notify' AND f.id BETWEEN %(low)s AND %(high)s
    UNION ALL
    SELECT f.id, f.finished_at, 'cancelled', 0, NULL,
           json_build_object('by', 'ops@admin-1', 'reason', 'the customer asked'), NULL
    FROM fill_jobs f WHERE f.state = 'cancelled' AND f.id BETWEEN %(low)s AND %(high)s
    UNION ALL
    SELECT f.id, f.created_at + make_interval(secs => f.wait_s), 'reserved', 0, f.worker_id,
           NULL, NULL
    FROM fill_jobs f WHERE f.state = 'reserved' AND f.id BETWEEN %(low)s AND %(high)s
    UNION ALL
    SELECT f.id, x.at, x.kind, x.attempt, w.worker_id, x.detail, w.child_pid
    FROM fill_jobs f
    CROSS JOIN LATERAL generate_series(1, f.attempts) AS k
    CROSS JOIN LATERAL (
        SELECT f.created_at + make_interval(secs => k * f.wait_s + (k - 1) * f.run_s
                                            + f.backoff_s * (k - 1) * k / 2) AS s
    ) AS t
    CROSS JOIN LATERAL (
        SELECT 1 + f.gen * 4 + mod(f.h5 + k, 4) AS worker_id,
               20000 + (1 + f.gen * 4 + mod(f.h5 + k, 4)) * 8 + mod(f.h5 / 4 + k, 2) AS child_pid
    ) AS w
    CROSS JOIN LATERAL (VALUES
        (t.s - interval '2 ms', 'reserved', k - 1, NULL::json, true),
        (t.s, 'started', k, NULL::json, true),
        (t.s + make_interval(secs => f.run_s),
         CASE WHEN k < f.attempts THEN 'failed' ELSE f.state END, k,
         CASE WHEN k < f.attempts OR f.state = 'failed'
              THEN json_build_object('runtime', round(f.run_s::numeric, 6), 'reason', 'error',
                                     'traceback', f.traceback)
              ELSE json_build_object('runtime', round(f.run_s::numeric, 6)) END,
         NOT (k = f.attempts AND f.state = 'running')),
        (t.s + make_interval(secs => f.run_s) + interval '1 ms', 'retry_scheduled', k,
         json_build_object('run_at', t.s + make_interval(secs => f.run_s + f.backoff_s * k),
                           'delay', f.backoff_s * k),
         k < f.attempts)
    ) AS x (at, kind, attempt, detail, keep)
    WHERE x.keep AND f.id BETWEEN %(low)s AND %(high)s
) AS e
ORDER BY e.at, e.job_id
"""

_WORKERS = """
INSERT INTO workers (id, name, host, pid, processes, reserve, queues, lease_seconds, status,
                     started_at, heartbeat_at, expires_at, stopped_at)
OVERRIDING SYSTEM VALUE
SELECT 1 + g * 4 + i, 'app-' || (i + 1) || '-' || lpad(g::text, 2, '0'), 'app-' || (i + 1),
       10000 + (1 + g * 4 + i) * 7, 4, 256,
       CASE WHEN i = 3 THEN ARRAY['mail'] ELSE '{}'::text[] END, 30,
       CASE WHEN g = %(generations)s - 1 THEN 'running'
            WHEN mod(1 + g * 4 + i, 13) = 0 THEN 'lost' ELSE 'stopped' END,
       %(start)s + make_interval(secs => g * %(generation_seconds)s),
       CASE WHEN g = %(generations)s - 1 THEN %(now)s
            ELSE %(start)s + make_interval(secs => (g + 1) * %(generation_seconds)s) END,
       CASE WHEN g = %(generations)s - 1 THEN %(now)s + interval '1 day'
            ELSE %(start)s + make_interval(secs => (g + 1) * %(generation_seconds)s + 30) END,
       CASE WHEN g = %(generations)s - 1 THEN NULL
            ELSE %(start)s + make_interval(secs => (g + 1) * %(generation_seconds)s + 30) END
FROM generate_series(0, %(generations)s - 1) AS g, generate_series(0, 3) AS i
"""

# Every schedule's ledger over the month: a tick per interval (cron ones: daily), one in
# twenty skipped, the others naming the job created at that moment.
_TICKS = """
INSERT INTO schedule_ticks (schedule, due_at, outcome, job_id, reason, recorded_at, worker_id)
SELECT s.name, d.due,
       CASE WHEN mod(pg_temp.fill_hash(extract(epoch FROM d.due)::bigint, 7), 20) = 0
            THEN 'skipped' ELSE 'fired' END,
       CASE WHEN mod(pg_temp.fill_hash(extract(epoch FROM d.due)::bigint, 7), 20) = 0 THEN NULL
            WHEN d.due < %(hour_start)s
            THEN least(%(jobs)s, 1 + floor(extract(epoch FROM d.due - %(start)s) / %(step_old)s))::bigint
            ELSE least(%(jobs)s, %(older)s + 1
                       + floor(extract(epoch FROM d.due - %(hour_start)s) / %(step_new)s))::bigint
       END,
       CASE WHEN mod(pg_temp.fill_hash(extract(epoch FROM d.due)::bigint, 7), 20) = 0
            THEN 'the previous job is still running' END,
       d.due + interval '40 ms',
       1 + 4 * least(%(generations)s - 1,
                     floor(extract(epoch FROM d.due - %(start)s) / %(generation_seconds)s))::integer
FROM schedules s
CROSS JOIN LATERAL generate_series(
    %(start)s + make_interval(secs => coalesce(s.every_seconds, 86400)), %(now)s,
    make_interval(secs => coalesce(s.every_seconds, 86400))) AS d (due)
"""


@dataclass
class FillReport:
    """What was made and how long each step took (seconds)."""

    jobs: int = 0
    events: int = 0
    trees: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    size: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def schedule_specs() -> list[dict[str, Any]]:
    """The schedules of the data (``app.schedules.add`` keyword arguments)."""
    specs: list[dict[str, Any]] = [
        {"name": "cache:warm", "task": "cache.warm", "every": 600},
        {"name": "analytics:rollup", "task": "analytics.rollup", "every": 3600},
        {"name": "reports:daily", "task": "reports.build", "cron": "0 6 * * *"},
        {"name": "billing:invoices", "task": "billing.invoice", "cron": "0 2 * * *",
         "ref": ("customer", "1")},
    ]  # fmt: skip
    specs += [
        {"name": f"website:{w}:check", "task": "websites.check", "every": 300,
         "ref": ("website", str(w))}
        for w in range(1, 9)
    ]  # fmt: skip
    return specs


@contextmanager
def _step(report: FillReport, name: str, log: Callable[[str], None]) -> Iterator[None]:
    log(f"fill: {name}")
    began = time.perf_counter()
    yield
    report.seconds[name] = report.seconds.get(name, 0.0) + time.perf_counter() - began


def fill(
    conn: psycopg.Connection[Any],
    schema: str,
    jobs: int,
    events: int,
    now: datetime,
    log: Callable[[str], None],
) -> FillReport:
    """Fill tasktrail's tables in ``schema`` (set up, empty, schedules already added) on
    ``conn`` (autocommit); see the module docstring."""
    layout = Layout(jobs, now)
    retried, span = attempt_plan(jobs, events)
    params: dict[str, Any] = {
        "jobs": jobs,
        "now": now,
        "start": layout.start,
        "hour_start": layout.hour_start,
        "active_since": now - ACTIVE,
        "older": layout.older,
        "step_old": layout.step_old,
        "step_new": layout.step_new,
        "last_tree_id": layout.id_at(now - TREE_MARGIN),
        "tree_per_cent": TREE_PER_CENT,
        "hot": HOT_WEBSITES,
        "websites": WEBSITES,
        "retried_per_mille": retried,
        "attempt_span": span,
        "generations": GENERATIONS,
        "generation_seconds": MONTH.total_seconds() / GENERATIONS,
        "single_of": _single_of(),
        "names": [t.name for t in TASKS],
        "queues": [t.queue for t in TASKS],
        "priorities": [t.priority for t in TASKS],
        "errors": [t.error for t in TASKS],
        "ref_types": [t.ref_type for t in TASKS],
        "ref_counts": [t.ref_count or None for t in TASKS],
        "runs": [t.run_seconds for t in TASKS],
    }
    report = FillReport()
    conn.execute(f'SET search_path TO "{schema}"')
    for setting in ("synchronous_commit = off", "maintenance_work_mem = '1GB'",
                    "work_mem = '512MB'", "jit = off"):  # fmt: skip
        conn.execute(f"SET {setting}")
    conn.execute(_HASH)
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s"
        " AND tablename IN ('jobs', 'events') AND indexname NOT LIKE '%%pkey'",
        (schema,),
    ).fetchall()
    with _step(report, "plan", log):
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{schema}"."{name}"')
        conn.execute("ALTER TABLE jobs DISABLE TRIGGER USER")  # the notify trigger
        conn.execute(_PLAN, params)
        conn.execute("CREATE INDEX ON fill_jobs (id)")
        conn.execute("ANALYZE fill_jobs")
    with _step(report, "jobs", log):
        conn.execute(_JOBS)
        conn.execute(_JOB_AFTER)
        conn.execute("SELECT setval(pg_get_serial_sequence('jobs', 'id'), %s)", (jobs,))
        conn.execute("ALTER TABLE jobs ENABLE TRIGGER USER")
    with _step(report, "events", log):
        for low in range(1, jobs + 1, EVENT_CHUNK):
            high = min(jobs, low + EVENT_CHUNK - 1)
            log(f"fill: events of jobs {low:,}..{high:,} of {jobs:,}")
            conn.execute(_EVENTS, {"low": low, "high": high})
    with _step(report, "workers, ledger", log):
        conn.execute(_WORKERS, params)
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('workers', 'id'), %s)", (GENERATIONS * 4,)
        )
        conn.execute(_TICKS, params)
        conn.execute(
            "INSERT INTO queues (name, paused, changed_at, changed_by) VALUES"
            " ('legacy', true, %(now)s - interval '10 days', 'ops@admin-1'),"
            " ('mail', false, %(now)s - interval '2 days', 'ops@admin-1')",
            params,
        )
    with _step(report, "indexes", log):
        log(f"fill: rebuilding {len(indexes)} indexes")
        for _, definition in indexes:
            conn.execute(definition)
    with _step(report, "vacuum analyze", log):
        conn.execute("DROP TABLE fill_jobs")
        for table in ("jobs", "events", "job_after", "workers", "schedules", "schedule_ticks",
                      "queues"):  # fmt: skip
            conn.execute(f"VACUUM ANALYZE {table}")
    rows = conn.execute("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY 1").fetchall()
    report.by_status = {str(status): int(count) for status, count in rows}
    report.jobs = sum(report.by_status.values())
    [(report.events, report.trees, report.size)] = conn.execute(
        "SELECT (SELECT count(*) FROM events),"
        " (SELECT count(*) FROM jobs WHERE task = 'websites.crawl'),"
        " pg_size_pretty(pg_total_relation_size('jobs') + pg_total_relation_size('events'))"
    ).fetchall()
    return report
