"""Lookups and reports of the PostgreSQL backend: jobs, statistics, pruning.

Functions of an open connection; :class:`~.backend.PostgresBackend` calls them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from ...job import Job
from ...stats import RUN_SAMPLE, build_task_stats
from ..base import JobFilter, PruneCutoffs, PruneReport, TaskStats
from . import rows

__all__ = ["get_job", "list_jobs", "prune", "task_stats"]

Connection = psycopg.Connection[Any]
#: Jobs (or ledger rows) deleted per statement by prune, so that no transaction grows
#: large.
PRUNE_BATCH = 5000
#: Schedules whose ledger rows one statement of prune looks through.
PRUNE_SCHEDULES = 100
#: The statuses of the partial indexes on jobs, as SQL: a filter of statuses within one
#: of them says so in the statement's text too, so that the statement's generic plan
#: (a prepared one, after a few calls) can use that index, which a bound parameter
#: alone cannot prove it may (1M jobs: /workers' held jobs 170 ms -> a few ms).
_PARTIAL_STATUSES = (
    (frozenset({"reserved", "running"}), "j.status IN ('reserved', 'running')"),
    (frozenset({"queued"}), "j.status = 'queued'"),
)


def get_job(conn: Connection, q: dict[str, str], job_id: int) -> Job | None:
    query = q["select_jobs"] + " WHERE j.id = %(id)s"
    row = conn.execute(query.encode(), {"id": job_id}).fetchone()
    return rows.job(row) if row else None


def list_jobs(conn: Connection, q: dict[str, str], job_filter: JobFilter) -> list[Job]:
    """Jobs matching the filter, newest first. Conditions are fixed fragments; every value
    is a bound parameter."""
    f = job_filter
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if f.ids is not None:
        conditions.append("j.id = ANY (%(ids)s::bigint[])")
        params["ids"] = list(f.ids)
    for column, text in (("ref_type", f.ref_type), ("ref_id", f.ref_id)):
        if text is not None:
            conditions.append(f"j.{column} = %({column})s")
            params[column] = text
    head = ""
    if f.descendants and conditions:
        # the selected jobs, then level by level the follow-ups of each (jobs_parent)
        head = f"{q['tree_head']} {' AND '.join(conditions)} {q['tree_tail']} "
        conditions = ["j.id IN (SELECT id FROM tree)"]
    if f.tree is not None:
        conditions.append("(j.id = %(tree)s OR j.root_id = %(tree)s)")
        params["tree"] = f.tree
    for column, value in (
        ("task", f.task),
        ("queue", f.queue),
        ("worker_id", f.worker_id),
    ):
        if value is not None:
            conditions.append(f"j.{column} = %({column})s")
            params[column] = value
    if f.statuses is not None:
        conditions.append("j.status = ANY (%(statuses)s::text[])")
        params["statuses"] = list(f.statuses)
        for statuses, literal in _PARTIAL_STATUSES:
            if set(f.statuses) <= statuses:
                conditions.append(literal)
                break
    if f.since is not None:
        conditions.append("j.created_at >= %(since)s")
        params["since"] = f.since
    if f.until is not None:
        conditions.append("j.created_at < %(until)s")
        params["until"] = f.until
    if f.before_id is not None:
        conditions.append("j.id < %(before_id)s")
        params["before_id"] = f.before_id
    if f.finished_since is not None:
        conditions.append("j.finished_at >= %(finished_since)s")
        params["finished_since"] = f.finished_since
    where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
    params["limit"] = f.limit
    query = head + q["select_jobs"] + where + " ORDER BY j.id DESC LIMIT %(limit)s"
    return [rows.job(row) for row in conn.execute(query.encode(), params)]


def task_stats(
    conn: Connection, q: dict[str, str], since: datetime, now: datetime
) -> list[TaskStats]:
    window = {"since": since, "now": now}
    active = conn.execute(q["stats_active"], window).fetchall()
    finished = conn.execute(q["stats_finished"], window).fetchall()
    waits = conn.execute(q["stats_waits"], {**window, "sample": RUN_SAMPLE}).fetchall()
    active_ids = [job_id for *_, ids in active for job_id in ids or ()]
    sample = {"active_ids": active_ids, "sample": RUN_SAMPLE}
    runs = conn.execute(q["stats_runs"], {**window, **sample}).fetchall()
    return build_task_stats([row[:3] for row in active], finished, waits, runs)


def prune(
    conn: Connection, q: dict[str, str], older_than: dict[str, timedelta], now: datetime
) -> PruneReport:
    """Delete final jobs past their retention, and their events, then the ledger rows and
    the workers they leave without a reason to stay; each in batches (autocommit: every
    batch is its own transaction)."""
    jobs: dict[str, int] = {}
    events = 0
    for status, keep in sorted(older_than.items()):
        jobs[status] = 0
        while True:
            params = {"status": status, "cutoff": now - keep, "batch": PRUNE_BATCH}
            row = conn.execute(q["prune_batch"], params).fetchone()
            assert row is not None
            deleted_jobs, deleted_events = row
            jobs[status] += deleted_jobs
            events += deleted_events
            if deleted_jobs < PRUNE_BATCH:
                break
    cutoffs = PruneCutoffs.of(older_than, now)
    ticks = _prune_ticks(conn, q, cutoffs) if cutoffs.orphans_before is not None else 0
    conn.execute(q["prune_limits"], {"before": now - timedelta(hours=1)})
    workers = 0
    if cutoffs.unlinked_before is not None:
        row = conn.execute(q["prune_workers"], {"before": cutoffs.unlinked_before}).fetchone()
        assert row is not None
        workers = int(row[0])
    return PruneReport(jobs=jobs, events=events, schedule_ticks=ticks, workers=workers)


def _prune_ticks(conn: Connection, q: dict[str, str], cutoffs: PruneCutoffs) -> int:
    """Walk the ledger a few schedules at a time, deleting at most a batch per statement."""
    deleted = 0
    after = ""  # schedule names are never empty (schedule.validate_name)
    while True:
        params = {
            "after": after,
            "names": PRUNE_SCHEDULES,
            "batch": PRUNE_BATCH,
            "orphans_before": cutoffs.orphans_before,
            "unlinked_before": cutoffs.unlinked_before,
        }
        row = conn.execute(q["prune_ticks"], params).fetchone()
        assert row is not None
        last, names, gone = row
        deleted += int(gone)
        if gone >= PRUNE_BATCH:
            continue  # more of this chunk's rows to delete: the same chunk again
        if last is None or names < PRUNE_SCHEDULES:
            return deleted
        after = last
