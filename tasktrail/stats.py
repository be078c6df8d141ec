"""Per-task statistics: counts by status, run and wait time percentiles, failure rate,
throughput. Pure functions over rows the backends fetch."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from .backends.base import TaskStats
from .job import STATUSES

__all__ = ["build_task_stats", "percentile"]


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
    window_seconds: float,
) -> list[TaskStats]:
    """Combine the backend's rows into one :class:`TaskStats` per task.

    Args:
        active: ``(task, status, count)`` for queued, reserved and running jobs now.
        finished: ``(task, status, run_seconds, wait_seconds)`` per job that reached a
            final status within the window (the times may be ``None``, e.g. for a job
            cancelled before it started).
        window_seconds: the length of the window, for the throughput.
    """
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATUSES, 0))
    runs: dict[str, list[float]] = defaultdict(list)
    waits: dict[str, list[float]] = defaultdict(list)
    for task, status, count in active:
        counts[task][status] += int(count)
    for task, status, run_seconds, wait_seconds in finished:
        counts[task][status] += 1
        if run_seconds is not None and status != "cancelled":
            runs[task].append(max(0.0, float(run_seconds)))
        if wait_seconds is not None:
            waits[task].append(max(0.0, float(wait_seconds)))
    result = []
    for task in sorted(counts):
        by_status = counts[task]
        run = sorted(runs[task])
        wait = sorted(waits[task])
        done = by_status["succeeded"] + by_status["failed"]
        final = done + by_status["cancelled"]
        result.append(
            TaskStats(
                task=task,
                counts=by_status,
                run_p50=percentile(run, 0.5),
                run_p95=percentile(run, 0.95),
                wait_p50=percentile(wait, 0.5),
                wait_p95=percentile(wait, 0.95),
                failure_rate=(by_status["failed"] / done) if done else None,
                throughput=final / window_seconds if window_seconds > 0 else 0.0,
            )
        )
    return result
