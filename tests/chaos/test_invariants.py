"""The chaos harness's checker and schedule, on made-up histories: each rule must catch
what it is there for, and pass what is allowed."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from .faults import ALL_KINDS, POSTGRES_ONLY, kinds_for, make_schedule
from .invariants import Execution, check, executions_from_rows

T0 = 1_800_000_000.0


def _event(kind: str, attempt: int, at: float, worker: int | None = 1, **detail: Any) -> Any:
    moment = datetime.fromtimestamp(at, timezone.utc)
    return SimpleNamespace(kind=kind, attempt=attempt, at=moment, worker_id=worker, detail=detail)


def _job(job_id: int, status: str, attempts: int, task: str = "work") -> Any:
    return SimpleNamespace(id=job_id, status=status, attempts=attempts, task=task)


def _worker(worker_id: int, pid: int, status: str = "stopped") -> Any:
    return SimpleNamespace(id=worker_id, pid=pid, status=status, name=f"w{worker_id}")


WORKERS = [_worker(1, 100), _worker(2, 200)]


def _clean_job() -> tuple[Any, list[Any], list[Execution]]:
    events = [
        _event("enqueued", 0, T0, worker=None),
        _event("reserved", 0, T0 + 0.1),
        _event("started", 1, T0 + 0.2),
        _event("succeeded", 1, T0 + 0.5),
    ]
    runs = [Execution(1, 1, 1001, 100, T0 + 0.21, T0 + 0.4)]
    return _job(1, "succeeded", 1), events, runs


def test_a_clean_run_has_no_violation() -> None:
    job, events, runs = _clean_job()
    figures = check([job], {1: events}, WORKERS, runs, {"work": 1})
    assert figures.violations == []
    assert (figures.jobs, figures.executions, figures.lost, figures.duplicates) == (1, 1, 0, 0)


def test_a_missing_job_counts_as_lost() -> None:
    job, events, runs = _clean_job()
    figures = check([job], {1: events}, WORKERS, runs, {"work": 3})
    assert figures.lost == 2
    assert any("missing" in v for v in figures.violations)


def test_a_job_left_running_counts_as_lost() -> None:
    events = [
        _event("enqueued", 0, T0, worker=None),
        _event("started", 1, T0 + 0.2),
    ]
    figures = check([_job(1, "running", 1)], {1: events}, WORKERS, [], {"work": 1})
    assert figures.lost == 1
    assert any("still running" in v for v in figures.violations)


def test_an_attempt_run_in_two_processes_is_a_duplicate() -> None:
    job, events, runs = _clean_job()
    runs.append(Execution(1, 1, 1002, 100, T0 + 0.3, T0 + 0.45))
    figures = check([job], {1: events}, WORKERS, runs, {"work": 1})
    assert figures.duplicates >= 1
    assert any("ran in 2 processes" in v for v in figures.violations)


def _rescued(lost_at: float, second_start: float) -> tuple[Any, list[Any], list[Execution]]:
    """Attempt 1 on worker 1 never ends (its worker stalls); attempt 2 runs on worker 2."""
    events = [
        _event("enqueued", 0, T0, worker=None),
        _event("started", 1, T0 + 0.2, worker=1),
        _event("lost", 1, lost_at, worker=1),
        _event("retry_scheduled", 1, lost_at, worker=None),
        _event("started", 2, T0 + 10.0, worker=2),
        _event("succeeded", 2, T0 + 11.0, worker=2),
    ]
    runs = [
        Execution(1, 1, 1001, 100, T0 + 0.25, None),
        Execution(1, 2, 2001, 200, second_start, T0 + 10.9),
    ]
    return _job(1, "succeeded", 2), events, runs


def test_an_overlap_after_the_first_worker_was_declared_lost_is_allowed() -> None:
    job, events, runs = _rescued(lost_at=T0 + 5.0, second_start=T0 + 10.1)
    figures = check([job], {1: events}, WORKERS, runs, {"work": 1})
    assert figures.violations == []
    assert (figures.recovered, figures.overlaps_after_loss, figures.duplicates) == (1, 1, 0)


def test_an_overlap_before_the_loss_was_written_is_a_duplicate() -> None:
    job, events, runs = _rescued(lost_at=T0 + 5.0, second_start=T0 + 4.0)
    figures = check([job], {1: events}, WORKERS, runs, {"work": 1})
    assert figures.duplicates == 1
    assert any("at the same time" in v for v in figures.violations)


def test_two_successes_and_a_wrong_attempt_count_are_caught() -> None:
    _, events, runs = _clean_job()
    events.append(_event("succeeded", 1, T0 + 0.6))
    figures = check([_job(1, "succeeded", 2)], {1: events}, WORKERS, runs, {"work": 1})
    assert any("succeeded 2 times" in v for v in figures.violations)
    assert any("attempts is 2 but 1 started" in v for v in figures.violations)


def test_an_execution_under_another_worker_and_an_unknown_job_are_caught() -> None:
    job, events, runs = _clean_job()
    runs[0] = Execution(1, 1, 1001, 200, T0 + 0.21, T0 + 0.4)  # under worker 2's pid
    runs.append(Execution(99, 1, 1003, 100, T0, T0 + 0.1))
    figures = check([job], {1: events}, WORKERS, runs, {"work": 1})
    assert any("not under worker 1" in v for v in figures.violations)
    assert any("job 99 ran but is not in the database" in v for v in figures.violations)


def test_an_invalid_history_and_a_worker_left_running_are_caught() -> None:
    job, events, runs = _clean_job()
    events.insert(3, _event("released", 1, T0 + 0.3))  # not allowed while running
    workers = [_worker(1, 100, status="running")]
    figures = check([job], {1: events}, workers, runs, {"work": 1})
    assert any("invalid history" in v for v in figures.violations)
    assert any("still registered as running" in v for v in figures.violations)


def test_side_rows_written_twice_merge_into_one_execution() -> None:
    rows = [
        {"job": 1, "attempt": 1, "pid": 5, "ppid": 4, "phase": "start", "at": 10.0},
        {"job": 1, "attempt": 1, "pid": 5, "ppid": 4, "phase": "start", "at": 10.0},
        {"job": 1, "attempt": 1, "pid": 5, "ppid": 4, "phase": "end", "at": 11.0},
    ]
    assert executions_from_rows(rows) == [Execution(1, 1, 5, 4, 10.0, 11.0)]


def test_the_schedule_is_seeded_and_has_every_kind() -> None:
    kinds = kinds_for("postgres")
    first = make_schedule(7, kinds, 60.0, 20.0)
    assert first == make_schedule(7, kinds, 60.0, 20.0)
    assert first != make_schedule(8, kinds, 60.0, 20.0)
    assert set(ALL_KINDS) == {fault.kind for fault in first}
    assert len(first) == len(kinds) + 20
    assert all(0 < fault.at < 60.0 for fault in first)
    assert not POSTGRES_ONLY & set(kinds_for("sqlite"))
    assert "partition" not in kinds_for("postgres", netns=False)


def _fan_in(ready_at: list[float], parent_end: float) -> tuple[list[Any], dict[int, list[Any]]]:
    """Job 1 (succeeded, ended at ``parent_end``) and job 2 that waited for it, released
    at each of ``ready_at``."""
    parent, parent_events, _ = _clean_job()
    parent.finished_at = datetime.fromtimestamp(parent_end, timezone.utc)
    child = _job(2, "succeeded", 1, task="gather")
    events = [
        _event("enqueued", 0, T0, worker=None),
        _event("waiting", 0, T0, worker=None, after=[1], policy="finished"),
        *[_event("ready", 0, at, worker=None) for at in ready_at],
        _event("started", 1, T0 + 2),
        _event("succeeded", 1, T0 + 3),
    ]
    return [parent, child], {1: parent_events, 2: events}


def test_a_waiting_job_released_once_after_its_jobs_ended_passes() -> None:
    jobs, events = _fan_in([T0 + 0.5], parent_end=T0 + 0.5)
    runs = [*_clean_job()[2], Execution(2, 1, 1002, 100, T0 + 2.1, T0 + 2.5)]
    figures = check(jobs, events, WORKERS, runs, {"work": 1, "gather": 1})
    assert figures.violations == [] and figures.waited == 1


def test_a_waiting_job_released_early_or_twice_is_caught() -> None:
    jobs, events = _fan_in([T0 + 0.3], parent_end=T0 + 0.5)
    runs = [*_clean_job()[2], Execution(2, 1, 1002, 100, T0 + 2.1, T0 + 2.5)]
    figures = check(jobs, events, WORKERS, runs, {"work": 1, "gather": 1})
    assert any("before the last of [1] ended" in v for v in figures.violations)
    jobs, events = _fan_in([T0 + 0.5, T0 + 0.6], parent_end=T0 + 0.5)
    figures = check(jobs, events, WORKERS, runs, {"work": 1, "gather": 1})
    assert any("released 2 times" in v for v in figures.violations)
