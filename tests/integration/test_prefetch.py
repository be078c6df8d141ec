"""A child holds jobs behind the one it runs only when that one is about to end.

With short jobs the worker hands each child several at once, so the children never
wait for the database. A job must never be queued behind one that runs long: it would
wait for it while other children are free (head-of-line blocking). These tests hold a
job open with a gate, so what "long" means does not depend on the machine's speed.
"""

from __future__ import annotations

from . import tasks
from .helpers import all_final, assert_valid_histories, wait_for

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
