"""Fleet-wide concurrency limits with real workers: a task's ``concurrency=N`` holds across
every worker, proved from the jobs' histories."""

from __future__ import annotations

import tasktrail

from . import tasks
from .helpers import ATTEMPT_END_KINDS, assert_valid_histories, max_overlap, wait_for


def test_three_workers_never_run_more_of_a_task_than_its_concurrency(
    app: tasktrail.App, worker_dsn: str, workers
) -> None:
    started = [workers.start(processes=2) for _ in range(3)]
    handles = [tasks.limited_sleep.enqueue(i, 0.5) for i in range(12)]
    wait_for(
        lambda: all(app.job(handle.id).is_final for handle in handles),
        "the twelve jobs to end",
        timeout=60,
        diagnose=started[0].diagnose,
    )
    intervals = []
    workers_used = set()
    for handle in handles:
        job = app.job(handle.id)
        assert job.status == "succeeded" and job.lock_limit == 2
        events = app.events(handle.id)
        [begin] = [e for e in events if e.kind == "started"]
        [end] = [e for e in events if e.kind in ATTEMPT_END_KINDS]
        intervals.append((begin.at.timestamp(), end.at.timestamp()))
        workers_used.add(begin.worker_id)
    assert max_overlap(intervals) == 2  # reached, and never passed
    if worker_dsn.startswith("postgresql"):
        # a freed place wakes the queue's workers there; on SQLite the worker that ended
        # the job claims at once and the others at their next poll, so one may take all
        assert len(workers_used) >= 2  # the limit held across workers, not inside one
    assert_valid_histories(app)


def test_no_second_holds_more_starts_of_a_task_than_its_rate(app: tasktrail.App, workers) -> None:
    started = [workers.start(processes=2) for _ in range(3)]
    handles = [tasks.rated_call.enqueue(i) for i in range(16)]
    wait_for(
        lambda: all(app.job(handle.id).is_final for handle in handles),
        "the sixteen jobs to end",
        timeout=60,
        diagnose=started[0].diagnose,
    )
    starts = sorted(
        event.at.timestamp()
        for handle in handles
        for event in app.events(handle.id)
        if event.kind == "started"
    )
    assert len(starts) == 16 and all(app.job(h.id).status == "succeeded" for h in handles)
    # every window of one second, from each start: at most four starts in it
    assert max(sum(1 for t in starts if first <= t < first + 1.0) for first in starts) <= 4
    assert starts[-1] - starts[0] >= 3.0  # sixteen at four a second take three seconds at least
    assert_valid_histories(app)
