"""Lookups and reports of the PostgreSQL backend: jobs, statistics, pruning.

Functions of an open connection; :class:`~.backend.PostgresBackend` calls them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from ...job import Job
from ...stats import build_task_stats
from ..base import JobFilter, PruneReport, TaskStats
from . import rows

__all__ = ["get_job", "list_jobs", "prune", "task_stats"]

Connection = psycopg.Connection[Any]
#: Jobs deleted per statement by prune, so that no transaction grows large.
PRUNE_BATCH = 5000


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
    if f.since is not None:
        conditions.append("j.created_at >= %(since)s")
        params["since"] = f.since
    if f.until is not None:
        conditions.append("j.created_at < %(until)s")
        params["until"] = f.until
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
    active_ids = [job_id for *_, ids in active for job_id in ids or ()]
    runs = conn.execute(q["stats_runs"], {**window, "active_ids": active_ids}).fetchall()
    return build_task_stats([row[:3] for row in active], finished, runs)


def prune(
    conn: Connection, q: dict[str, str], older_than: dict[str, timedelta], now: datetime
) -> PruneReport:
    """Delete final jobs past their retention, and their events, in batches."""
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
    return PruneReport(jobs=jobs, events=events)
