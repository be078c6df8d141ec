"""Job state changes of the SQLite backend that take several statements.

Functions of a connection inside the caller's write transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from ...job import FINAL_STATUSES, RESERVED, RUNNING, Enqueued, NewJob, Outcome
from ...lifecycle import follow
from .._sql import queries
from ..base import RecoveredJob
from ..common import (
    after_cancel_request,
    after_links,
    check_after,
    lost_error,
    new_job_columns,
    outcome_events,
    transition,
    with_roots,
)
from . import rows

__all__ = ["Candidates", "candidates", "enqueue_in", "finish", "record_starts", "take_back"]

_Q = queries("sqlite")


def enqueue_in(conn: sqlite3.Connection, jobs: Sequence[NewJob], now: datetime) -> list[Enqueued]:
    now_text = rows.ts(now)

    def roots_of(ids: list[int]) -> dict[int, int]:
        return dict(conn.execute(_Q["job_roots"], {"ids": json.dumps(ids)}).fetchall())

    jobs = with_roots(jobs, roots_of)
    check_after(jobs, roots_of)
    result: list[Enqueued] = []
    created: list[int] = []
    for job in jobs:
        row = conn.execute(
            _Q["insert_job"],
            {
                **new_job_columns(job),
                "run_at": rows.ts(job.run_at) if job.run_at is not None else now_text,
                "now": now_text,
            },
        ).fetchone()
        if row is not None:
            created.append(row[0])
            result.append(Enqueued(row[0], True))
        else:  # its unique key is taken by an active job
            existing = conn.execute(_Q["active_unique"], {"unique_key": job.unique_key})
            result.append(Enqueued(existing.fetchone()[0], False))
    conn.executemany(
        _Q["insert_event"],
        [rows.event_row(job_id, now, "enqueued", 0, None) for job_id in created],
    )
    links = after_links(jobs, result)
    if links:
        wait_for(conn, links, now)
    return result


def wait_for(conn: sqlite3.Connection, links: list[dict[str, Any]], now: datetime) -> None:
    """Make jobs just inserted wait for others (``common.after_links``): waiting, a
    ``waiting`` event naming them, a ``job_after`` row each, and each of those counts
    its dependents (the trigger releases them at once if that one has ended)."""
    by_job: dict[int, list[int]] = {}
    policy: dict[int, str] = {}
    for link in links:
        by_job.setdefault(link["job_id"], []).append(link["after_id"])
        policy[link["job_id"]] = link["policy"]
    waiting: list[int] = []
    for job_id, after in by_job.items():
        params = {"job_id": job_id, "count": len(after), "policy": policy[job_id]}
        if conn.execute(_Q["make_waiting"], params).fetchone() is not None:
            waiting.append(job_id)
    conn.executemany(
        _Q["insert_event"],
        [
            rows.event_row(
                job_id, now, "waiting", 0, None,
                {"after": sorted(by_job[job_id]), "policy": policy[job_id]},
            )
            for job_id in waiting
        ],
    )  # fmt: skip
    conn.executemany(
        _Q["insert_after"],
        [
            {"job_id": job_id, "after_id": after_id}
            for job_id in waiting
            for after_id in by_job[job_id]
        ],
    )
    per_parent: dict[int, int] = {}
    for job_id in waiting:
        for after_id in by_job[job_id]:
            per_parent[after_id] = per_parent.get(after_id, 0) + 1
    conn.executemany(
        _Q["add_dependents"],
        [{"after_id": after_id, "count": count} for after_id, count in sorted(per_parent.items())],
    )


class Candidates(NamedTuple):
    """Jobs to claim, best first, and the rate of those under one (``(rate_key,
    window)`` by id): their start is recorded with :func:`record_starts`."""

    ids: list[int]
    rated: dict[int, tuple[str, float]]


def candidates(
    conn: sqlite3.Connection, queues: Sequence[str], limit: int, now: datetime
) -> Candidates:
    """Jobs to claim, best first: priority, then run_at, then id, across the queues.

    The limits are kept here, in the write transaction (SQLite has one writer at a
    time, so the counts are exact): a job with a lock key only while its key has room
    (fewer reserved or running than its limit: one for a lock, the task's concurrency),
    a job under a rate only while its window has room, counting those chosen here.
    Jobs that wait for their key do not count towards ``limit``: if they fill a page
    of candidates, a bigger page is read, so they never keep unrelated jobs waiting.
    """
    page = limit
    at = {"now": rows.ts(now), "epoch": now.timestamp()}
    while True:
        found, complete = _candidate_rows(conn, queues, page, at)
        chosen = Candidates([], {})
        taken: dict[str, int] = {}
        for job_id, _, _, lock_key, room, rate_key, rate_room, window in found:
            if not (lock_key is None or _take(taken, lock_key, room)):
                continue
            if rate_key is not None:
                if not _take(taken, "\0" + rate_key, rate_room):
                    continue
                chosen.rated[job_id] = (rate_key, window)
            chosen.ids.append(job_id)
            if len(chosen.ids) == limit:
                return chosen
        if complete:
            return chosen  # every claimable job was seen
        page *= 4


def _take(taken: dict[str, int], key: str, room: int) -> bool:
    """Count one more job of ``key`` if it has ``room`` for it."""
    if taken.get(key, 0) >= room:
        return False
    taken[key] = taken.get(key, 0) + 1
    return True


def record_starts(
    conn: sqlite3.Connection,
    rated: dict[int, tuple[str, float]],
    started: Sequence[int],
    now: datetime,
) -> None:
    """Record the starts of the jobs ``started`` that are under a rate (see record_start)."""
    starts = [rated[job_id] for job_id in started if job_id in rated]
    if not starts:
        return
    epoch = now.timestamp()
    conn.executemany(
        _Q["prune_starts"],
        [
            {"rate_key": key, "window": window, "epoch": epoch}
            for key, window in dict(starts).items()
        ],
    )
    conn.executemany(_Q["record_start"], [{"rate_key": key, "epoch": epoch} for key, _ in starts])


def _candidate_rows(
    conn: sqlite3.Connection, queues: Sequence[str], limit: int, at: dict[str, Any]
) -> tuple[list[Any], bool]:
    """``(id, priority, run_at, lock_key, room, rate_key, rate_room, rate_window)`` of up
    to ``limit`` claimable jobs per queue, best first, and whether that is all of them
    (``room``, ``rate_room``: how many more jobs of its key, of its rate, may be
    claimed)."""
    if not queues:
        found = conn.execute(_Q["claim_candidates"], {**at, "limit": limit}).fetchall()
        return found, len(found) < limit
    found, complete = [], True
    for queue in queues:
        rows = conn.execute(
            _Q["claim_candidates_in_queue"], {**at, "queue": queue, "limit": limit}
        ).fetchall()
        found.extend(rows)
        complete = complete and len(rows) < limit
    if len(queues) > 1:
        found.sort(key=lambda row: (-row[1], row[2], row[0]))
    return found, complete


def finish(
    conn: sqlite3.Connection, worker_id: int, outcomes: Sequence[Outcome], now: datetime
) -> list[int]:
    """Apply outcomes (fenced) and write their events; return the rejected job ids."""
    rejected: list[int] = []
    waited_for: list[int] = []  # ended here, and jobs wait for them
    events: list[dict[str, Any]] = []
    ids = json.dumps([outcome.job_id for outcome in outcomes])
    marked = conn.execute(_Q["marked_among"], {"ids": ids}).fetchall()
    cancelling = {job_id for job_id, cancel, _ in marked if cancel}
    awaited = {job_id for job_id, _, waited in marked if waited}
    for reported in outcomes:
        outcome = after_cancel_request(reported) if reported.job_id in cancelling else reported
        change = transition(outcome)
        params = {
            "job_id": outcome.job_id,
            "worker_id": worker_id,
            "attempt": outcome.attempt,
            "status": change.status,
            "finished_at": rows.ts(outcome.finished_at),
            "result": outcome.result_json,
            "error": outcome.error,
            "run_at": rows.ts(change.run_at) if change.run_at is not None else None,
            "extra_attempts": change.extra_attempts,
        }
        applied = conn.execute(_Q["finish"], params).rowcount == 1
        if applied and outcome.job_id in awaited and change.status in FINAL_STATUSES:
            waited_for.append(outcome.job_id)
        if not applied:
            if not conn.execute(_Q["job_exists"], params).fetchone():
                continue  # no such job: nothing to record it against
            rejected.append(outcome.job_id)
        events.extend(
            rows.event_row(
                outcome.job_id, at, kind, outcome.attempt, worker_id, detail, outcome.child_pid
            )
            for at, kind, detail in outcome_events(outcome, applied, worker_id, now)
        )
    conn.executemany(_Q["insert_event"], events)
    if waited_for:
        conn.execute(_Q["touch_dependents"], {"ids": json.dumps(waited_for)})
    return rejected


def take_back(conn: sqlite3.Connection, worker_id: int, now: datetime) -> list[RecoveredJob]:
    """Recover every job ``worker_id`` holds: reserved ones requeued, running ones lost."""
    now_text = rows.ts(now)
    params = {"worker_id": worker_id, "now": now_text, "error": lost_error(worker_id)}
    recovered: list[RecoveredJob] = []
    events: list[dict[str, Any]] = []
    for name, was, kinds in _TAKE_BACK:
        became = follow(was, *kinds)
        for job_id, attempts in conn.execute(_Q[name], params).fetchall():
            recovered.append(RecoveredJob(job_id, worker_id, was, became))
            detail = {"was": was, "error": lost_error(worker_id)}
            events.append(rows.event_row(job_id, now, "lost", attempts, worker_id, detail))
            if "retry_scheduled" in kinds:
                events.append(
                    rows.event_row(
                        job_id, now, "retry_scheduled", attempts, None, {"run_at": now_text}
                    )
                )
    conn.executemany(_Q["insert_event"], events)
    return recovered


#: How :func:`take_back` recovers a job: the statement, the status it takes the job
#: from, and the events it writes (the status it leaves it in is theirs, in the lifecycle).
_TAKE_BACK = (
    ("recover_reserved", RESERVED, ("lost",)),
    ("recover_running_retry", RUNNING, ("lost", "retry_scheduled")),
    ("recover_running_fail", RUNNING, ("lost",)),
)
