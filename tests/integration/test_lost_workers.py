"""Workers that die or stall without a word: their leases expire, another worker takes
their jobs back (as ``lost``), and a stalled one that wakes up cannot overwrite them."""

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


def _ended(record_file: str) -> list[dict]:
    return [line for line in tasks.read_lines(record_file) if line["phase"] == "end"]


def test_a_killed_supervisor_takes_its_children_along_and_its_jobs_come_back(
    app, workers, record_file, gate
):
    handles = [tasks.block_retried.enqueue(record_file, str(gate)) for _ in range(6)]
    doomed = workers.start(processes=2, reserve=4, lease=1.0)
    wait_for(
        lambda: (
            status_counts(app) == {"running": 2, "queued": 4} and len(_started(record_file)) == 2
        ),
        "two jobs running",
        diagnose=doomed.diagnose,
    )
    doomed_id = doomed.record(app).id
    running_pids = [line["pid"] for line in _started(record_file)]
    running_jobs = {line["job"] for line in _started(record_file)}

    doomed.signal(signal.SIGKILL)
    doomed.wait()
    # Busy children never read EOF from their socket: only PR_SET_PDEATHSIG stops them.
    wait_for(
        lambda: not any(process_alive(pid) for pid in running_pids),
        "the orphaned children to die with their supervisor",
    )
    # Nobody has recovered the jobs yet: they are still in the dead worker's hands.
    assert status_counts(app) == {"running": 2, "queued": 4}

    gate.touch()
    rescuer = workers.start(processes=2, lease=1.0)
    wait_for(lambda: all_final(app), "every job to finish", diagnose=rescuer.diagnose)

    assert doomed.record(app).status == "lost"
    assert [h.get().status for h in handles] == ["succeeded"] * 6
    for handle in handles:
        job, events = handle.get(), handle.events()
        lost = [e for e in events if e.kind == "lost"]
        if job.id in running_jobs:
            # The attempt that died with the worker counts; the retry finished the job.
            assert [(e.worker_id, e.detail["was"]) for e in lost] == [(doomed_id, "running")]
            assert job.attempts == 2
            assert kinds(events)[kinds(events).index("lost") + 1] == "retry_scheduled"
        else:
            assert lost == []
            assert job.attempts == 1
        assert job.worker_id == rescuer.record(app).id
    ends = Counter(line["job"] for line in tasks.read_lines(record_file) if line["phase"] == "end")
    assert ends == dict.fromkeys((h.id for h in handles), 1)
    assert_valid_histories(app)


def test_a_stalled_worker_that_wakes_up_cannot_overwrite_the_newer_attempt(
    app, workers, record_file, gate
):
    handle = tasks.block_retried.enqueue(record_file, str(gate))
    stalled = workers.start(processes=1, lease=1.0)
    wait_for(lambda: _started(record_file), "the first attempt to start", diagnose=stalled.diagnose)
    stalled_id = stalled.record(app).id

    # A stopped supervisor cannot heartbeat (think: a long GC pause, a network partition);
    # its child goes on running attempt 1.
    stalled.signal(signal.SIGSTOP)
    try:
        rescuer = workers.start(processes=1, lease=1.0)
        wait_for(
            lambda: [line["attempt"] for line in _started(record_file)] == [1, 2],
            "the job to be recovered and started again elsewhere",
            diagnose=rescuer.diagnose,
        )
        gate.touch()  # both attempts finish now
        wait_for(lambda: handle.get().status == "succeeded", "attempt 2 to succeed")
        wait_for(lambda: len(_ended(record_file)) == 2, "attempt 1 to end in its child")
    finally:
        stalled.signal(signal.SIGCONT)

    # The stalled worker now reports attempt 1's outcome: the fence refuses it.
    wait_for(
        lambda: "outcome_rejected" in kinds(handle.events()),
        "the late outcome to be refused",
        diagnose=stalled.diagnose,
    )
    job = handle.get()
    assert (job.status, job.attempts, job.result) == ("succeeded", 2, 2)
    assert job.worker_id == rescuer.record(app).id
    rejected = next(e for e in handle.events() if e.kind == "outcome_rejected")
    assert rejected.worker_id == stalled_id
    assert (rejected.attempt, rejected.detail["outcome"]) == (1, "succeeded")
    lost = next(e for e in handle.events() if e.kind == "lost")
    assert (lost.worker_id, lost.detail["was"]) == (stalled_id, "running")

    # It learns it was declared lost and registers again as a new worker; the old row
    # stays lost. Both then stop cleanly.
    def rows():
        return [w for w in app.workers(include_stopped=True, limit=None) if w.name == stalled.name]

    wait_for(lambda: len(rows()) == 2, "the stalled worker to register again")
    assert [(w.id == stalled_id, w.status) for w in rows()] == [(False, "running"), (True, "lost")]
    for worker in (stalled, rescuer):
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.diagnose()
    assert all_final(app)
    assert_valid_histories(app)
