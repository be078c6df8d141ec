"""Long jobs are spread over every worker's free processes: no job waits in a busy
worker's hands while another worker has a process free (issue 16).

A worker claims only what its children begin now, or within about a round trip, and a
job planned for a child that stays busy is given back to the queue after at most a
second (less for a task known to be shorter), for whichever worker is free first.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from . import tasks
from .helpers import all_final, assert_valid_histories, kinds, wait_for

JOB_SECONDS = 4.0
#: Every job of a round must begin within this long of its enqueue.
START_BOUND = 2.0


def _starts(record_file: str) -> dict[int, dict]:
    """Each job's first start, as the task saw it."""
    found: dict[int, dict] = {}
    for line in tasks.read_lines(record_file):
        if line["phase"] == "start":
            found.setdefault(line["job"], line)
    return found


@pytest.mark.parametrize("reserves", [(4, 2), (None, None)], ids=["reserve-4-2", "default"])
def test_every_job_begins_at_once_while_any_worker_has_a_free_process(
    app, workers, record_file, reserves
):
    """Two idle workers of 3 and 2 processes; rounds of 4, 5 and 4 jobs of 4 s, each
    enqueued at once (one transaction) once the round before is done: every job begins
    within 2 s of its enqueue, in every round, and the 5 of the middle round fill all
    five processes."""
    # The default poll (once a second), as a user runs them: a wake-up or a claim is
    # what gets a job to a process, not a quick poll.
    first = workers.start(processes=3, reserve=reserves[0], poll_interval=1.0)
    second = workers.start(processes=2, reserve=reserves[1], poll_interval=1.0)
    ids = {w.name: w.wait_registered(app).id for w in (first, second)}
    for count in (4, 5, 4):
        handles = app.enqueue_many(
            tasks.pause.prepare(record_file, JOB_SECONDS) for _ in range(count)
        )
        wait_for(
            lambda handles=handles: all(h.get().status == "succeeded" for h in handles),
            f"a round of {count} jobs",
            timeout=3 * JOB_SECONDS + 20,
            diagnose=workers.diagnose,
        )
        starts = _starts(record_file)
        late = {}
        for handle in handles:
            job = handle.get()
            waited = starts[job.id]["wall"] - job.created_at.timestamp()
            if waited > START_BOUND:
                late[job.id] = (round(waited, 2), kinds(handle.events()))
        assert not late, f"round of {count}: jobs that began late: {late}"
        if count == 5:
            ran = Counter(handle.get().worker_id for handle in handles)
            assert ran == {ids["w1"]: 3, ids["w2"]: 2}
            assert len({starts[h.id]["pid"] for h in handles}) == 5
    assert_valid_histories(app)


def test_a_job_claimed_behind_one_that_runs_long_goes_to_a_free_worker(
    app, workers, record_file, gate
):
    """A worker with one process learns that `pause` takes about 0.6 s. One runs long
    (it waits for a gate): the follower claimed for that child as the job was due to end
    waits in the supervisor, and after the task's usual run time it goes back to the
    queue (``interrupted``, attempt given back). A second worker, idle, runs it, while
    the first job still runs."""
    busy = workers.start(processes=1, poll_interval=1.0)
    busy_id = busy.wait_registered(app).id
    warm_up = tasks.pause.enqueue(record_file, 0.6)
    wait_for(lambda: warm_up.get().status == "succeeded", "the warm-up job", diagnose=busy.diagnose)

    stuck = tasks.pause.enqueue(record_file, 0.6, str(gate))
    follower = tasks.pause.enqueue(record_file, 0.1)
    wait_for(
        lambda: follower.get().status == "running" and follower.get().worker_id == busy_id,
        "the follower to be claimed for the busy child",
        diagnose=busy.diagnose,
    )
    free = workers.start(processes=1, poll_interval=1.0)
    free_id = free.wait_registered(app).id
    wait_for(
        lambda: follower.get().status == "succeeded",
        "the follower to run on the free worker",
        diagnose=workers.diagnose,
    )
    assert stuck.get().status == "running"
    job, events = follower.get(), follower.events()
    assert job.worker_id == free_id
    assert kinds(events) == ["enqueued", "started", "interrupted", "started", "succeeded"]
    given_back = events[2]
    assert given_back.worker_id == busy_id
    assert "given back" in given_back.detail["reason"]
    # (it waited about the task's usual run time, 0.6 s, in the busy worker)
    assert 0.3 <= (given_back.at - events[1].at).total_seconds() <= 1.5
    assert [e.worker_id for e in events if e.kind == "started"] == [busy_id, free_id]
    assert job.attempts == 2 and job.max_attempts == 2  # the first attempt given back

    gate.touch()
    wait_for(lambda: all_final(app), "the stuck job", diagnose=workers.diagnose)
    assert_valid_histories(app)


def test_a_job_whose_task_a_worker_lacks_waits_for_one_that_has_it(app, workers):
    """A rolling deploy: the job's task is new, and the first worker to take it runs the
    older code, without it. It puts the job back for later (``deferred``, the attempt
    given back) instead of failing it; the new worker runs it."""
    job = tasks.add.enqueue(2, 3)
    old = workers.start(app_spec="tests.integration.flow_tasks:app", processes=1)
    wait_for(lambda: "deferred" in kinds(job.events()), "the job put back", diagnose=old.diagnose)
    old.signal(signal.SIGTERM)  # the deploy replaces it
    assert old.wait() == 0, old.diagnose()
    waiting = job.get()
    assert (waiting.status, waiting.attempts, waiting.max_attempts) == ("queued", 1, 2)
    deferred = next(e for e in job.events() if e.kind == "deferred")
    assert deferred.detail["reason"] == "unknown_task" and deferred.detail["task"] == "add"
    assert (waiting.run_at - deferred.at).total_seconds() == pytest.approx(5.0, abs=0.5)

    new = workers.start(processes=1)
    new_id = new.wait_registered(app).id
    wait_for(lambda: job.get().status == "succeeded", "the new worker to run it", timeout=30)
    done = job.get()
    assert (done.result, done.worker_id) == (5, new_id)
    assert kinds(job.events()) == ["enqueued", "started", "deferred", "started", "succeeded"]
    assert_valid_histories(app)


def test_a_job_whose_task_stays_unknown_fails_after_the_grace(app, workers):
    job = tasks.add.enqueue(2, 3)
    old = workers.start(
        app_spec="tests.integration.flow_tasks:app", processes=1, unknown_task_grace=0
    )
    wait_for(lambda: job.get().status == "failed", "the job to fail", diagnose=old.diagnose)
    failed = job.get()
    assert "unknown task 'add'" in (failed.error or "")
    assert kinds(job.events()) == ["enqueued", "started", "failed"]
    assert job.events()[-1].detail["reason"] == "unknown_task"
    assert_valid_histories(app)
