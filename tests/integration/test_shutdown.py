"""Stopping workers, gently and not: no job is lost, stuck or run twice."""

from __future__ import annotations

import signal
from collections import Counter

from . import tasks
from .helpers import (
    all_final,
    assert_valid_histories,
    kinds,
    process_alive,
    status_counts,
    wait_for,
)


def _started(record_file: str) -> list[dict]:
    return [line for line in tasks.read_lines(record_file) if line["phase"] == "start"]


def _hold_two_running(app, workers, record_file, gate, **options):
    """Six blocked jobs; a worker with two processes and room for all six in its
    reserve, which holds two: the ones its processes run. It buffers none (the others
    are left queued for any worker with a free process)."""
    handles = [tasks.block.enqueue(record_file, str(gate)) for _ in range(6)]
    worker = workers.start(processes=2, reserve=6, **options)
    wait_for(
        lambda: status_counts(app) == {"running": 2, "queued": 4},
        "two jobs running",
        diagnose=worker.diagnose,
    )
    wait_for(lambda: len(_started(record_file)) == 2, "both children to start their job")
    assert status_counts(app) == {"running": 2, "queued": 4}
    return worker, handles


def test_sigterm_lets_running_jobs_finish_and_claims_no_more(app, workers, record_file, gate):
    worker, handles = _hold_two_running(app, workers, record_file, gate, grace=30)

    worker.signal(signal.SIGTERM)
    wait_for(lambda: "stopping" in worker.log(), "the worker to begin stopping")
    assert worker.alive()  # still waiting for its running jobs, within --grace
    gate.touch()
    assert worker.wait() == 0, worker.diagnose()

    jobs = {handle.id: handle.get() for handle in handles}
    assert Counter(job.status for job in jobs.values()) == {"succeeded": 2, "queued": 4}
    for handle in handles:
        job = jobs[handle.id]
        events = handle.events()
        if job.status == "succeeded":
            assert job.attempts == 1
            assert kinds(events)[-2:] == ["started", "succeeded"]
        else:  # never claimed: stopping, the worker took no more
            assert (job.attempts, kinds(events)) == (0, ["enqueued"])
    assert worker.record(app).status == "stopped"
    assert worker.children() == []
    assert_valid_histories(app)


def test_jobs_running_past_the_grace_are_killed_and_requeued(app, workers, record_file, gate):
    cooperative = tasks.block.enqueue(record_file, str(gate))  # dies of SIGTERM
    stubborn = tasks.ignore_sigterm_forever.enqueue()  # needs SIGKILL
    worker = workers.start(processes=2, grace=0.5, kill_grace=0.5)
    wait_for(
        lambda: status_counts(app) == {"running": 2} and _started(record_file),
        "both jobs to run",
        diagnose=worker.diagnose,
    )

    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.diagnose()

    for handle, how in ((cooperative, {"exit_code": 143}), (stubborn, {"signal": "SIGKILL"})):
        job = handle.get()
        # Back in the queue, not failed: a shutdown is not the job's fault, so the
        # attempt it used is given back (no retries configured: 1 + 1 attempts).
        assert (job.status, job.attempts, job.max_attempts) == ("queued", 1, 2)
        last = handle.events()[-1]
        assert last.kind == "interrupted"
        assert last.detail["reason"] == "worker shutdown"
        assert how.items() <= last.detail.items()
    assert worker.record(app).status == "stopped"
    assert_valid_histories(app)


def test_a_second_sigint_stops_at_once_and_loses_nothing(app, workers, record_file, gate):
    # --grace is long: only the second signal can make the worker exit soon.
    worker, handles = _hold_two_running(app, workers, record_file, gate, grace=600)
    children = worker.children()
    assert len(children) == 2

    # Ctrl-C in a terminal signals the whole process group: children ignore SIGINT.
    worker.signal_group(signal.SIGINT)
    wait_for(lambda: "stopping" in worker.log(), "the worker to begin stopping")
    assert status_counts(app) == {"running": 2, "queued": 4}
    assert worker.alive()
    assert all(process_alive(pid) for pid in children)
    worker.signal_group(signal.SIGINT)
    assert worker.wait() == 0, worker.diagnose()

    # Nothing stuck in the worker's hands: every job can be run by another worker.
    assert status_counts(app) == {"queued": 6}
    interrupted = [h for h in handles if "interrupted" in kinds(h.events())]
    assert len(interrupted) == 2
    for handle in interrupted:
        assert handle.events()[-1].detail["signal"] == "SIGKILL"
    assert worker.record(app).status == "stopped"
    wait_for(lambda: not any(process_alive(pid) for pid in children), "the children to exit")

    # And another worker does run them, each exactly once more.
    gate.touch()
    rerun = workers.start(processes=2)
    wait_for(lambda: all_final(app), "the requeued jobs to finish", diagnose=rerun.diagnose)
    assert [h.get().status for h in handles] == ["succeeded"] * 6
    ends = Counter(line["job"] for line in tasks.read_lines(record_file) if line["phase"] == "end")
    assert ends == dict.fromkeys((h.id for h in handles), 1)
    assert_valid_histories(app)


def test_burst_mode_exits_zero_once_the_queues_are_drained(app, workers, record_file):
    handles = [tasks.record.enqueue(record_file) for _ in range(20)]
    handles.append(tasks.fail_then_succeed.enqueue(1))  # a retry keeps the queue busy
    worker = workers.start(processes=2, burst=True)
    assert worker.wait() == 0, worker.diagnose()

    assert [h.get().status for h in handles] == ["succeeded"] * len(handles)
    assert handles[-1].get().attempts == 2
    assert worker.record(app).status == "stopped"
    assert_valid_histories(app)

    # And with nothing to do at all, it exits at once.
    idle = workers.start(processes=1, burst=True)
    assert idle.wait() == 0, idle.diagnose()
    assert idle.record(app).status == "stopped"
