"""stats.percentile and build_task_stats."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasktrail.backends import TaskStats
from tasktrail.job import STATUSES
from tasktrail.stats import build_task_stats, percentile

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


def stats_of(
    active: list[tuple[str, str, Any]],
    jobs: list[tuple[str, str, int, float | None]],
    runs: list[tuple[str, float | None]],
) -> list[TaskStats]:
    """build_task_stats over finished jobs given one by one as ``(task, status, minute,
    wait)``, turned into the rows the backends' queries return: counts and active minutes
    per task, and a wait per job that started."""
    finished: dict[str, tuple[dict[str, int], set[int]]] = {}
    for task, status, minute, _ in jobs:
        counts, minutes = finished.setdefault(
            task, ({"succeeded": 0, "failed": 0, "cancelled": 0}, set())
        )
        counts[status] += 1
        minutes.add(minute)
    rows = [
        (task, c["succeeded"], c["failed"], c["cancelled"], len(m))
        for task, (c, m) in finished.items()
    ]
    waits = [(task, wait) for task, _, _, wait in jobs if wait is not None]
    return build_task_stats(active, rows, waits, runs)


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 0.5) is None


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([3], 0.0) == 3.0
    assert percentile([3], 0.95) == 3.0


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.0, 10.0), (0.25, 17.5), (0.5, 25.0), (0.75, 32.5), (1.0, 40.0), (0.95, 38.5)],
)
def test_percentile_interpolates_linearly(fraction: float, expected: float) -> None:
    assert percentile([10, 20, 30, 40], fraction) == pytest.approx(expected)


def test_median_of_an_odd_count_is_the_middle_value() -> None:
    assert percentile([1, 2, 100], 0.5) == 2.0


@given(st.lists(finite, min_size=1, max_size=50), st.floats(0, 1), st.floats(0, 1))
def test_percentile_is_monotonic_in_the_fraction(
    values: list[float], first: float, second: float
) -> None:
    ordered = sorted(values)
    low, high = sorted((first, second))
    p_low = percentile(ordered, low)
    p_high = percentile(ordered, high)
    assert p_low is not None
    assert p_high is not None
    assert p_low <= p_high + 1e-6 * max(1.0, abs(p_high))


@given(st.lists(finite, min_size=1, max_size=50), st.floats(0, 1))
def test_percentile_lies_within_the_values(values: list[float], fraction: float) -> None:
    ordered = sorted(values)
    result = percentile(ordered, fraction)
    assert result is not None
    slack = 1e-6 * max(1.0, abs(ordered[0]), abs(ordered[-1]))
    assert ordered[0] - slack <= result <= ordered[-1] + slack


@given(st.lists(finite, min_size=1, max_size=50))
def test_percentile_ends_are_min_and_max(values: list[float]) -> None:
    ordered = sorted(values)
    assert percentile(ordered, 0.0) == ordered[0]
    assert percentile(ordered, 1.0) == ordered[-1]


def test_build_task_stats_combines_active_finished_and_runs() -> None:
    active = [("a", "queued", 3), ("a", "running", 1), ("b", "reserved", 2)]
    finished = [  # (task, status, finished minute, wait)
        ("a", "succeeded", 100, 0.5),
        ("a", "succeeded", 100, 1.5),
        ("a", "failed", 107, 2.5),
        ("a", "cancelled", 107, None),  # cancelled before it started: no wait
        ("b", "cancelled", 100, None),
    ]
    runs = [("a", 1.0), ("a", 3.0), ("a", 2.0)]
    stats = {s.task: s for s in stats_of(active, finished, runs)}
    assert list(stats) == ["a", "b"]
    a = stats["a"]
    assert a.counts == {
        "queued": 3,
        "reserved": 0,
        "running": 1,
        "succeeded": 2,
        "failed": 1,
        "cancelled": 1,
    }
    assert a.run_p50 == 2.0
    assert a.run_p95 == pytest.approx(2.9)
    assert a.run_p99 == pytest.approx(2.98)
    assert a.wait_p50 == 1.5
    assert a.wait_p95 == pytest.approx(2.4)
    assert a.wait_p99 == pytest.approx(2.48)
    assert a.failure_rate == pytest.approx(1 / 3)
    assert a.throughput_per_active_minute == 2.0  # 4 jobs in minutes 100 and 107
    b = stats["b"]
    assert b.counts["reserved"] == 2
    assert b.counts["cancelled"] == 1
    assert (b.run_p50, b.run_p95, b.wait_p50, b.wait_p95) == (None, None, None, None)
    assert b.failure_rate is None  # nothing ran to success or failure
    assert b.throughput_per_active_minute == 1.0


def test_throughput_is_per_active_minute_not_spread_over_the_window() -> None:
    # 120 jobs in one minute of an hour: 120 per active minute, however long the window.
    [burst] = stats_of([], [("a", "succeeded", 5, 0.0)] * 120, [])
    assert burst.throughput_per_active_minute == 120.0
    steady = [("a", "succeeded", minute, 0.0) for minute in range(60)]
    [even] = stats_of([], steady, [])
    assert even.throughput_per_active_minute == 1.0


def test_runs_of_a_task_with_no_final_job_yet() -> None:
    # attempts that failed and wait for their retry: run times, nothing final
    [stats] = stats_of([("a", "queued", 2)], [], [("a", 4.0), ("a", 6.0)])
    assert stats.run_p50 == 5.0
    assert stats.counts["queued"] == 2
    assert (stats.failure_rate, stats.throughput_per_active_minute) == (None, 0.0)
    [only_runs] = stats_of([], [], [("z", 1.0)])
    assert (only_runs.task, only_runs.run_p95) == ("z", 1.0)


def test_a_run_without_its_start_is_skipped() -> None:
    [stats] = stats_of([], [], [("a", None), ("a", 2.0)])
    assert stats.run_p50 == stats.run_p95 == 2.0


def test_negative_times_from_clock_skew_count_as_zero() -> None:
    [stats] = stats_of([], [("a", "succeeded", 1, -2.0)], [("a", -0.5)])
    assert stats.run_p50 == 0.0
    assert stats.wait_p50 == 0.0


def test_tasks_come_sorted_and_with_every_status() -> None:
    result = stats_of([("z", "queued", "2"), ("m", "running", 1)], [], [])
    assert [s.task for s in result] == ["m", "z"]
    assert result[1].counts["queued"] == 2
    # every status a job has once queued (a job waiting for others is not counted yet)
    assert all(set(s.counts) == set(STATUSES) - {"waiting"} for s in result)
    assert all(s.throughput_per_active_minute == 0.0 for s in result)


def test_no_rows_no_stats() -> None:
    assert stats_of([], [], []) == []


def test_to_dict_flattens_the_counts() -> None:
    [stats] = stats_of([("a", "queued", 1)], [("a", "failed", 9, 2.0)], [("a", 1.0)])
    data = stats.to_dict()
    assert data["task"] == "a"
    assert data["queued"] == 1
    assert data["failed"] == 1
    assert data["failure_rate"] == 1.0
    assert data["throughput_per_active_minute"] == 1.0
    assert "throughput" not in data
    assert data["run_p50"] == 1.0
