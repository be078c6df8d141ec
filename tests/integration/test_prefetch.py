"""A child holds jobs behind the one it runs only when that one is about to end.

With short jobs the worker hands each child several at once, so the children never
wait for the database. A job must never be queued behind one that runs long: it would
wait for it while other children are free (head-of-line blocking). These tests hold a
job open with a gate, so what "long" means does not depend on the machine's speed.
"""

from __future__ import annotations

import os
import socket
from collections import Counter

from tasktrail.worker.child import child_main
from tasktrail.worker.protocol import recv_message, send_message

from . import tasks
from .helpers import all_final, assert_valid_histories, kinds, status_counts, wait_for

PROCESSES = 2
SHORT_JOBS = 20


def test_no_job_waits_behind_a_long_one_while_a_child_is_free(app, workers, record_file, gate):
    worker = workers.start(processes=PROCESSES, reserve=32)
    worker.wait_registered(app)
    # Many short jobs first: the worker learns that jobs are short, and from then on
    # hands each child several at a time.
    app.enqueue_many(tasks.record.prepare(record_file) for _ in range(200))
    wait_for(lambda: all_final(app), "the warm-up jobs", diagnose=workers.diagnose)

    # One transaction, the blocking job first: one claim takes it with the short ones.
    handles = app.enqueue_many(
        [tasks.block.prepare(record_file, str(gate))]
        + [tasks.record.prepare(record_file) for _ in range(SHORT_JOBS)]
    )
    blocker, short = handles[0], handles[1:]
    # The short jobs all finish on the other child while the blocking one still runs;
    # one held behind it would wait for the gate.
    wait_for(
        lambda: all(app.job(h.id).status == "succeeded" for h in short),
        "the short jobs to finish while the long one runs",
        diagnose=workers.diagnose,
    )
    assert app.job(blocker.id).status == "running"

    gate.touch()
    wait_for(lambda: all_final(app), "the long job", diagnose=workers.diagnose)
    jobs = assert_valid_histories(app)
    assert all(job.status == "succeeded" for job in jobs)


def test_a_worker_at_the_default_reserve_leaves_long_jobs_to_the_next_worker(
    app, workers, record_file, gate
):
    """Eight long jobs queued before any worker: the first worker (two processes, the
    default reserve of 128) takes the two its processes run and buffers none; the other
    six are left queued, and a second worker started later runs two of them at once."""
    handles = app.enqueue_many(tasks.block.prepare(record_file, str(gate)) for _ in range(8))
    first = workers.start(processes=PROCESSES)
    wait_for(
        lambda: status_counts(app) == {"running": 2, "queued": 6},
        "the first worker to hold the two its processes run",
        diagnose=workers.diagnose,
    )
    second = workers.start(processes=PROCESSES)
    second_id = second.wait_registered(app).id
    wait_for(
        lambda: sum(1 for h in handles if app.job(h.id).worker_id == second_id) == 2,
        "the second worker to take two of the six left",
        diagnose=workers.diagnose,
    )
    assert status_counts(app) == {"running": 4, "queued": 4}
    first_id = first.record(app).id

    gate.touch()
    wait_for(lambda: all_final(app), "the long jobs", diagnose=workers.diagnose)
    jobs = assert_valid_histories(app)
    assert Counter(job.status for job in jobs) == {"succeeded": 8}
    # (who runs the last four, once the gate opens, is a race between the two)
    ran = Counter(job.worker_id for job in jobs)
    assert set(ran) == {first_id, second_id} and min(ran.values()) >= 2


def test_a_child_reports_its_own_cost_only_for_jobs_it_did_not_wait_for():
    """A forked child given three jobs in one message reports, for the second and third,
    the time from the job before's end to their start (``gap``: what a job costs the
    child besides its run time, see JobFlow.depth); for the first, and for one it had
    to wait for, it reports none: waiting for work is not its cost."""
    ours, theirs = socket.socketpair()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's side, ends in os._exit
        ours.close()
        child_main(tasks.app, theirs, parent, None)
    theirs.close()
    try:
        job = {"task": "add", "args": "[1, 2]", "kwargs": "{}", "attempt": 1, "ref": None}
        send_message(ours, {"jobs": [{**job, "job": n} for n in (1, 2, 3)]})
        first = [recv_message(ours) for _ in range(3)]
        send_message(ours, {"jobs": [{**job, "job": 4}]})
        later = recv_message(ours)
    finally:
        ours.close()
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    outcomes = [*first, later]
    assert [m["job"] for m in outcomes] == [1, 2, 3, 4]
    assert all(m["ok"] and m["result"] == "3" for m in outcomes)
    assert "gap" not in outcomes[0] and "gap" not in outcomes[3]
    assert all(0 <= m["gap"] < 5 for m in outcomes[1:3])


def test_a_child_that_dies_gives_back_the_short_jobs_queued_behind_its_job(
    app, workers, record_file
):
    """Children hold several short jobs at once; when one dies (here: its job calls
    os._exit), the jobs queued behind the one it ran were never begun: they go back to
    the queue (``interrupted``, attempt given back) and each runs exactly once."""
    worker = workers.start(processes=PROCESSES, reserve=64 * PROCESSES)
    worker.wait_registered(app)
    # The worker learns that this task is quick, so it queues several in each child.
    app.enqueue_many(tasks.record_or_exit.prepare(record_file) for _ in range(300))
    wait_for(lambda: all_final(app), "the warm-up jobs", diagnose=workers.diagnose)

    handles = app.enqueue_many(
        [tasks.record_or_exit.prepare(record_file, exit_code=7)]
        + [tasks.record_or_exit.prepare(record_file) for _ in range(60)]
    )
    wait_for(lambda: all_final(app), "the jobs after the crash", diagnose=workers.diagnose)
    assert_valid_histories(app)
    crashed, others = app.job(handles[0].id), handles[1:]
    assert crashed.status == "failed" and "7" in (crashed.error or "")
    assert all(app.job(h.id).status == "succeeded" for h in others)
    runs = Counter(line["job"] for line in tasks.read_lines(record_file))
    assert [runs[h.id] for h in others] == [1] * len(others)
    # Some were queued behind the crashed job, and came back.
    assert any("interrupted" in kinds(h.events()) for h in others)
