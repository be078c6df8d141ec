"""Per-task statistics: counts by status, run and wait time percentiles, failure rate,
throughput per active minute. Pure functions over rows the backends fetch."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from .backends.base import TaskStats, failure_rate
from .job import STATUSES, WAITING

__all__ = ["RUN_END_KINDS", "RUN_SAMPLE", "build_task_stats", "percentile"]

#: The events that end an attempt in its child: only these attempts have a run time. An
#: attempt that ended otherwise (``lost``, ``interrupted``, ``cancelled``, ``deferred``)
#: has none: the time until its worker's lease lapsed, or until a shutdown, is not a run.
RUN_END_KINDS = ("succeeded", "failed", "timeout")
#: The run-time and wait percentiles read this many jobs at most: the newest that finished
#: in the window (and, for run times, the active ones). Every job and attempt of a day or
#: a week of a busy queue would be millions of rows (bench/results/dashboard-*.md).
RUN_SAMPLE = 5000


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile (0..1) of sorted values, by linear interpolation."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    position = fraction * (len(sorted_values) - 1)
    low = math.floor(position)
    high = math.ceil(position)
    weight = position - low
    return float(sorted_values[low] * (1 - weight) + sorted_values[high] * weight)


def build_task_stats(
    active: Iterable[Sequence[Any]],
    finished: Iterable[Sequence[Any]],
    waits: Iterable[Sequence[Any]],
    runs: Iterable[Sequence[Any]],
) -> list[TaskStats]:
    """Combine the backend's rows into one :class:`TaskStats` per task.

    Args:
        active: ``(task, status, count)`` for queued, reserved and running jobs now.
        finished: ``(task, succeeded, failed, cancelled, minutes)`` per task, of the jobs
            that reached a final status within the window: how many ended in each, and
            in how many clock minutes (UTC) they ended.
        waits: ``(task, wait_seconds)`` per job (of a sample) that finished within the
            window after it started: its last attempt's start minus its ``run_at``.
        runs: ``(task, run_seconds)`` per attempt that ended in its child (an event in
            :data:`RUN_END_KINDS`) within the window, from its ``started`` event to that
            end event; ``None`` (no ``started`` event found for it: a history written
            by hand, or cut by pruning) is skipped.
    """
    # (jobs waiting for others are not counted: they have not been queued yet)
    counted = tuple(status for status in STATUSES if status != WAITING)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(counted, 0))
    run_times: dict[str, list[float]] = defaultdict(list)
    wait_times: dict[str, list[float]] = defaultdict(list)
    minutes: dict[str, int] = defaultdict(int)
    for task, status, count in active:
        counts[task][status] += int(count)
    for task, succeeded, failed, cancelled, active_minutes in finished:
        by_status = counts[task]
        by_status["succeeded"] += int(succeeded)
        by_status["failed"] += int(failed)
        by_status["cancelled"] += int(cancelled)
        minutes[task] += int(active_minutes)
    for task, wait_seconds in waits:
        if wait_seconds is not None:
            wait_times[task].append(max(0.0, float(wait_seconds)))
    for task, run_seconds in runs:
        if run_seconds is not None:
            run_times[task].append(max(0.0, float(run_seconds)))
    result = []
    # (a task may have runs and no final job yet: attempts that failed and wait to retry)
    for task in sorted(counts.keys() | run_times.keys()):
        by_status = counts[task]
        run = sorted(run_times[task])
        wait = sorted(wait_times[task])
        final = by_status["succeeded"] + by_status["failed"] + by_status["cancelled"]
        active_minutes = minutes[task]
        result.append(
            TaskStats(
                task=task,
                counts=by_status,
                run_p50=percentile(run, 0.5),
                run_p95=percentile(run, 0.95),
                wait_p50=percentile(wait, 0.5),
                wait_p95=percentile(wait, 0.95),
                failure_rate=failure_rate(by_status),
                throughput_per_active_minute=final / active_minutes if active_minutes else 0.0,
                run_p99=percentile(run, 0.99),
                wait_p99=percentile(wait, 0.99),
            )
        )
    return result
