"""stats.percentile and build_task_stats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasktrail.job import STATUSES
from tasktrail.stats import build_task_stats, percentile

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


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


def test_build_task_stats_combines_active_and_finished() -> None:
    active = [("a", "queued", 3), ("a", "running", 1), ("b", "reserved", 2)]
    finished = [
        ("a", "succeeded", 1.0, 0.5),
        ("a", "succeeded", 3.0, 1.5),
        ("a", "failed", 2.0, 2.5),
        ("a", "cancelled", 9.0, None),  # a cancelled job's run time is not a run time
        ("b", "cancelled", None, None),
    ]
    stats = {s.task: s for s in build_task_stats(active, finished, window_seconds=100)}
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
    assert a.wait_p50 == 1.5
    assert a.wait_p95 == pytest.approx(2.4)
    assert a.failure_rate == pytest.approx(1 / 3)
    assert a.throughput == pytest.approx(4 / 100)
    b = stats["b"]
    assert b.counts["reserved"] == 2
    assert b.counts["cancelled"] == 1
    assert (b.run_p50, b.run_p95, b.wait_p50, b.wait_p95) == (None, None, None, None)
    assert b.failure_rate is None  # nothing ran to success or failure
    assert b.throughput == pytest.approx(1 / 100)


def test_negative_times_from_clock_skew_count_as_zero() -> None:
    [stats] = build_task_stats([], [("a", "succeeded", -0.5, -2.0)], 10)
    assert stats.run_p50 == 0.0
    assert stats.wait_p50 == 0.0


def test_tasks_come_sorted_and_with_every_status() -> None:
    result = build_task_stats([("z", "queued", "2"), ("m", "running", 1)], [], 60)
    assert [s.task for s in result] == ["m", "z"]
    assert result[1].counts["queued"] == 2
    assert all(set(s.counts) == set(STATUSES) for s in result)
    assert all(s.throughput == 0.0 for s in result)


def test_zero_window_has_zero_throughput() -> None:
    [stats] = build_task_stats([], [("a", "succeeded", 1, 1)], 0)
    assert stats.throughput == 0.0


def test_no_rows_no_stats() -> None:
    assert build_task_stats([], [], 60) == []


def test_to_dict_flattens_the_counts() -> None:
    [stats] = build_task_stats([("a", "queued", 1)], [("a", "failed", 1.0, 2.0)], 10)
    data = stats.to_dict()
    assert data["task"] == "a"
    assert data["queued"] == 1
    assert data["failed"] == 1
    assert data["failure_rate"] == 1.0
    assert data["throughput"] == pytest.approx(0.1)
    assert data["run_p50"] == 1.0
