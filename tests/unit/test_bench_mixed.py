"""The mixed scenario's pure parts (bench/mixed.py): the job list, the ideal and FIFO
makespans, the ratio, and the reading of tasktrail's histories (no database, no fork)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bench import mixed
from bench.mixed import HistoryEvent, JobHistory
from bench.scenarios import QUICK, Sizes, mixed_figures


def test_the_long_jobs_sit_in_the_middle_of_each_equal_stretch() -> None:
    assert mixed.long_positions(408, 8) == [25, 76, 127, 178, 229, 280, 331, 382]
    assert mixed.long_positions(10, 2) == [2, 7]
    assert mixed.long_positions(5, 0) == []
    with pytest.raises(ValueError):
        mixed.long_positions(3, 4)


def test_the_job_list_has_every_job_once_with_the_long_ones_in_place() -> None:
    durations = mixed.mixed_durations(8, 2.0, 400, 0.01)
    assert len(durations) == 408
    assert [i for i, d in enumerate(durations) if d == 2.0] == mixed.long_positions(408, 8)
    assert durations.count(0.01) == 400
    assert sum(durations) == pytest.approx(20.0)


def test_the_ideal_is_total_work_over_processes() -> None:
    durations = mixed.mixed_durations(8, 2.0, 400, 0.01)
    assert mixed.ideal_makespan(durations, 4) == pytest.approx(5.0)
    assert mixed.ideal_makespan(Sizes().mixed_durations(), Sizes().mixed_slots) == (
        pytest.approx(5.0)
    )
    with pytest.raises(ValueError):
        mixed.ideal_makespan(durations, 0)


def test_the_ratio_is_makespan_over_ideal() -> None:
    assert mixed.makespan_ratio(5.25, 5.0) == pytest.approx(1.05)
    assert mixed.makespan_ratio(5.0, 5.0) == 1.0
    with pytest.raises(ValueError):
        mixed.makespan_ratio(1.0, 0.0)


def test_fifo_begins_each_job_on_the_first_free_process_never_before_the_one_ahead() -> None:
    # two processes: A(3) and B(1) start at 0; C(1) at 1 when B ends; D(1) at 2
    assert mixed.fifo_starts([3.0, 1.0, 1.0, 1.0], 2) == [0.0, 0.0, 1.0, 2.0]
    assert mixed.fifo_makespan([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    # one process: back to back
    assert mixed.fifo_makespan([1.0, 2.0, 3.0], 1) == 6.0
    # in order even when a process is free sooner: no job is begun before the one ahead
    assert mixed.fifo_starts([1.0, 5.0, 1.0, 1.0], 2) == [0.0, 0.0, 1.0, 2.0]
    assert mixed.fifo_makespan([], 3) == 0.0


def test_the_issues_order_cannot_reach_the_ideal_in_fifo_order() -> None:
    durations = mixed.mixed_durations(8, 2.0, 400, 0.01)
    best = mixed.fifo_makespan(durations, 4)
    assert best == pytest.approx(5.59, abs=0.005)
    assert mixed.makespan_ratio(best, 5.0) == pytest.approx(1.118, abs=0.001)
    starts = mixed.fifo_starts(durations, 4)
    # the last long job can begin only once 375 short and 7 long ones have
    assert starts[382] == pytest.approx(3.59, abs=0.005)


def test_the_figures_name_the_shape_and_the_ideal() -> None:
    makespan, ratio = mixed_figures("server", Sizes())
    assert makespan.key == "server.mixed"
    assert "8 × 2 s among 400 × 10 ms, 2 workers × 2 processes" in makespan.label
    assert ratio.label == "mixed: makespan ÷ ideal 5 s (target ≤ 1.05)"
    assert ratio.better == "lower"
    lite, _ = mixed_figures("sqlite", QUICK)
    assert lite.store == "sqlite" and lite.label.startswith("SQLite: mixed: 4 × 0.5 s")


T0 = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ran(
    position: int, seconds: float, claimed: float, began: float, worker: int, child: int
) -> JobHistory:
    return JobHistory(
        position,
        seconds,
        (
            HistoryEvent("enqueued", at(0), None, None, None),
            HistoryEvent("started", at(claimed), worker, child, None),
            HistoryEvent("succeeded", at(began + seconds), worker, child, {"runtime": seconds}),
        ),
    )


def test_the_histories_show_where_the_long_jobs_ran_and_who_waited_behind_them() -> None:
    long_a = ran(0, 2.0, 0.0, 0.01, worker=1, child=11)
    long_b = ran(2, 2.0, 0.02, 0.02, worker=2, child=21)
    short_ok = ran(1, 0.01, 0.0, 0.0, worker=1, child=12)
    # planned for child 11 while it ran long_a, given back at 1.0, ran at 1.2 on child 22
    short_late = JobHistory(
        3,
        0.01,
        (
            HistoryEvent("enqueued", at(0), None, None, None),
            HistoryEvent("started", at(0.5), 1, 11, None),
            HistoryEvent(
                "interrupted",
                at(1.0),
                1,
                11,
                {"reason": "not begun: its process stayed busy; given back for another worker"},
            ),
            HistoryEvent("started", at(1.1), 2, 22, None),
            HistoryEvent("succeeded", at(1.21), 2, 22, {"runtime": 0.01}),
        ),
    )
    found = mixed.diagnose(
        [long_b, short_late, long_a, short_ok], T0.timestamp(), slots=2, long_seconds=2.0
    )
    assert [j.position for j in found.longs] == [0, 2]
    first = found.longs[0]
    assert (first.began, first.ended) == (pytest.approx(0.01), pytest.approx(2.01))
    assert (first.worker_id, first.child_pid, first.given_back) == (1, 11, 0)
    assert found.longs[1].fifo_began == pytest.approx(0.01)  # after short_ok, on 2 slots
    assert found.by_worker == {1: 1, 2: 1}
    assert (found.given_back_short, found.given_back_long) == (1, 0)
    assert found.waits_behind_long == [pytest.approx(0.7)]  # claimed 0.5, began 1.2
    assert found.last_short_end == pytest.approx(1.21)
    assert found.last_end == pytest.approx(2.02)
    assert found.idle == pytest.approx(2 * 2.02 - 4.02)
    # in order on 2 processes: long_a and short_ok at 0, long_b at 0.01 (ends 2.01),
    # short_late at 2.0 (ends 2.01)
    assert found.fifo_measured == pytest.approx(2.01)
    text = found.summary()
    assert "'given back' interruptions: 1 short, 0 long" in text
    assert "1 (1 waited > 0.1 s, longest 0.70 s)" in text


def test_mixed_is_a_scenario_for_every_store() -> None:
    from bench.__main__ import applies, parse_args
    from bench.harness import LoadedPeer

    args = parse_args(["--scenarios", "mixed", "--tasktrail-history", "/tmp/h"])
    assert args.scenarios == ["mixed"] and args.tasktrail_history == "/tmp/h"

    class Store:
        def __init__(self, store: str) -> None:
            self.store = store

    for store in ("postgresql", "redis", "sqlite"):
        assert applies("mixed", LoadedPeer("x", "x_peer", Store(store)))  # type: ignore[arg-type]
