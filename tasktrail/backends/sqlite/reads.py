"""Lookups and reports of the SQLite backend: jobs, events, workers, statistics, pruning.

Functions of an open connection; :class:`~.backend.SqliteBackend` calls them.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from ...job import Event, Job, WorkerRecord
from ...stats import RUN_SAMPLE, build_task_stats
from .._sql import queries
from ..base import JobFilter, PruneCutoffs, PruneReport, TaskStats
from . import rows

__all__ = ["list_events", "list_jobs", "list_workers", "prune", "task_stats"]

_Q = queries("sqlite")


def list_jobs(conn: sqlite3.Connection, job_filter: JobFilter) -> list[Job]:
    """Jobs matching the filter, newest first. Conditions are fixed fragments; every value
    is a bound parameter."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    f = job_filter
    if f.ids is not None:
        conditions.append("j.id IN (SELECT value FROM json_each(:ids))")
        params["ids"] = json.dumps(list(f.ids))
    for column, text in (("ref_type", f.ref_type), ("ref_id", f.ref_id)):
        if text is not None:
            conditions.append(f"j.{column} = :{column}")
            params[column] = text
    head = ""
    if f.descendants and conditions:
        # the selected jobs, then level by level the follow-ups of each (jobs_parent)
        head = f"{_Q['tree_head']} {' AND '.join(conditions)} {_Q['tree_tail']} "
        conditions = ["j.id IN (SELECT id FROM tree)"]
    if f.tree is not None:
        conditions.append("(j.id = :tree OR j.root_id = :tree)")
        params["tree"] = f.tree
    for column, value in (
        ("task", f.task),
        ("queue", f.queue),
        ("worker_id", f.worker_id),
    ):
        if value is not None:
            conditions.append(f"j.{column} = :{column}")
            params[column] = value
    if f.statuses is not None:
        conditions.append("j.status IN (SELECT value FROM json_each(:statuses))")
        params["statuses"] = json.dumps(list(f.statuses))
    if f.since is not None:
        conditions.append("j.created_at >= :since")
        params["since"] = rows.ts(f.since)
    if f.until is not None:
        conditions.append("j.created_at < :until")
        params["until"] = rows.ts(f.until)
    if f.before_id is not None:
        conditions.append("j.id < :before_id")
        params["before_id"] = f.before_id
    if f.finished_since is not None:
        conditions.append("j.finished_at >= :finished_since")
        params["finished_since"] = rows.ts(f.finished_since)
    where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
    params["limit"] = -1 if f.limit is None else f.limit
    sql = head + _Q["select_jobs"] + where + " ORDER BY j.id DESC LIMIT :limit"
    return [rows.job(row) for row in conn.execute(sql, params)]


def get_job(conn: sqlite3.Connection, job_id: int) -> Job | None:
    found = conn.execute(_Q["select_jobs"] + " WHERE j.id = :id", {"id": job_id}).fetchone()
    return rows.job(found) if found else None


def list_events(conn: sqlite3.Connection, job_id: int) -> list[Event]:
    return [rows.event(row) for row in conn.execute(_Q["list_events"], {"job_id": job_id})]


def list_workers(
    conn: sqlite3.Connection, include_stopped: bool, limit: int | None
) -> list[WorkerRecord]:
    params = {"include_stopped": include_stopped, "limit": -1 if limit is None else limit}
    return [rows.worker(row) for row in conn.execute(_Q["list_workers"], params)]


def task_stats(conn: sqlite3.Connection, since: datetime, now: datetime) -> list[TaskStats]:
    window = {"since": rows.ts(since), "now": rows.ts(now)}
    active = conn.execute(_Q["stats_active"], window).fetchall()
    finished = conn.execute(_Q["stats_finished"], window).fetchall()
    waits = conn.execute(_Q["stats_waits"], {**window, "sample": RUN_SAMPLE}).fetchall()
    active_ids = [int(job_id) for *_, ids in active if ids for job_id in ids.split(",")]
    runs = conn.execute(
        _Q["stats_runs"], {**window, "active_ids": json.dumps(active_ids), "sample": RUN_SAMPLE}
    ).fetchall()
    return build_task_stats([row[:3] for row in active], finished, waits, runs)


def prune(conn: sqlite3.Connection, older_than: dict[str, timedelta], now: datetime) -> PruneReport:
    """Delete, in the caller's write transaction, final jobs past their retention, then
    the ledger rows and the workers they leave without a reason to stay."""
    jobs: dict[str, int] = {}
    events = 0
    for status, keep in sorted(older_than.items()):
        params = {"status": status, "cutoff": rows.ts(now - keep)}
        events += conn.execute(_Q["prune_events"], params).rowcount
        conn.execute(_Q["prune_after"], params)
        jobs[status] = conn.execute(_Q["prune_jobs"], params).rowcount
    cutoffs = PruneCutoffs.of(older_than, now)
    ticks = workers = 0
    if cutoffs.orphans_before is not None:
        ledger_cutoffs = {
            "orphans_before": rows.ts(cutoffs.orphans_before),
            "unlinked_before": _ts_or_none(cutoffs.unlinked_before),
        }
        ticks = conn.execute(_Q["prune_ticks"], ledger_cutoffs).rowcount
    if cutoffs.unlinked_before is not None:
        before = rows.ts(cutoffs.unlinked_before)
        workers = conn.execute(_Q["prune_workers"], {"before": before}).rowcount
    return PruneReport(jobs=jobs, events=events, schedule_ticks=ticks, workers=workers)


def _ts_or_none(value: datetime | None) -> str | None:
    return None if value is None else rows.ts(value)
