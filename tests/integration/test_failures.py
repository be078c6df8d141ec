"""Jobs that fail, hang, crash or are killed: each is recorded, retried per its policy,
and the worker goes on serving other jobs."""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import datetime

from . import tasks
from .helpers import (
    all_events,
    all_final,
    assert_valid_histories,
    kinds,
    parent_pid,
    path,
    process_alive,
    wait_for,
)


def test_timeout_kills_a_job_that_ignores_sigterm_and_the_worker_goes_on(app, workers):
    # One process: the other jobs can only run if the hung child is killed and replaced.
    worker = workers.start(processes=1, kill_grace=0.3)
    hung = tasks.ignore_sigterm_and_hang.enqueue()
    adds = [tasks.add.enqueue(i, 100) for i in range(3)]
    wait_for(
        lambda: any(e.kind == "timeout" for e in hung.events()),
        "the first timeout",
        diagnose=worker.diagnose,
    )
    # Enqueued after the first kill: served too.
    adds.append(tasks.add.enqueue(7, 7))
    wait_for(lambda: all_final(app), "every job to finish", diagnose=worker.diagnose)

    job = hung.get()
    assert job.status == "failed"
    assert job.attempts == 2  # retries=1: the timeout counted as a failed attempt, once retried
    assert "timed out after 0.5s (killed by SIGKILL)" in (job.error or "")
    events = hung.events()
    assert path(events) == [
        "enqueued",
        "started",
        "timeout",
        "retry_scheduled",
        "started",
        "timeout",
    ]
    for timeout in (e for e in events if e.kind == "timeout"):
        # It ignored SIGTERM, so only the SIGKILL after --kill-grace stopped it.
        assert timeout.detail["signal"] == "SIGKILL"
        assert timeout.detail["timeout"] == 0.5
    assert [handle.get().result for handle in adds] == [100, 101, 102, 14]
    assert worker.alive(), worker.diagnose()
    assert_valid_histories(app)


def test_a_child_that_kills_itself_is_recorded_retried_and_replaced(app, workers, record_file):
    worker = workers.start(processes=1)
    victim = tasks.kill_self.enqueue()
    after = [tasks.record.enqueue(record_file) for _ in range(3)]
    wait_for(lambda: all_final(app), "every job to finish", diagnose=worker.diagnose)

    job = victim.get()
    assert (job.status, job.attempts, job.result) == ("succeeded", 2, "survived")
    events = victim.events()
    assert path(events) == [
        "enqueued",
        "started",
        "failed",
        "retry_scheduled",
        "started",
        "succeeded",
    ]
    failed = next(event for event in events if event.kind == "failed")
    assert failed.detail["signal"] == "SIGKILL"
    assert failed.detail["reason"] == "crashed"
    assert failed.detail["error"] == "worker process killed by SIGKILL while running the job"
    assert [handle.get().status for handle in after] == ["succeeded"] * 3
    # The jobs after the crash ran in a child that is alive and is not the one that died.
    pids = {line["pid"] for line in tasks.read_lines(record_file)}
    assert pids and set(worker.children()) >= pids
    assert worker.alive(), worker.diagnose()
    assert_valid_histories(app)


def test_a_child_killed_from_outside_is_recorded_retried_and_replaced(
    app, workers, record_file, gate
):
    worker = workers.start(processes=1)
    handle = tasks.block_retried.enqueue(record_file, str(gate))
    first = wait_for(lambda: tasks.read_lines(record_file), "the job to start")[0]
    assert parent_pid(first["pid"]) == worker.pid  # it really runs in a forked child

    os.kill(first["pid"], signal.SIGKILL)
    wait_for(
        lambda: "failed" in kinds(handle.events()),
        "the killed attempt to be recorded",
        diagnose=worker.diagnose,
    )
    gate.touch()
    job = wait_for(lambda: (j := handle.get()).is_final and j, "the retry to finish")

    assert (job.status, job.attempts, job.result) == ("succeeded", 2, 2)
    failed = next(e for e in handle.events() if e.kind == "failed")
    assert failed.attempt == 1
    assert failed.detail["signal"] == "SIGKILL"
    assert "killed by SIGKILL" in failed.detail["error"]
    starts = [line for line in tasks.read_lines(record_file) if line["phase"] == "start"]
    assert [line["attempt"] for line in starts] == [1, 2]
    # The retry ran in a new child of the same worker.
    assert starts[1]["pid"] != first["pid"]
    assert not process_alive(first["pid"])
    assert starts[1]["pid"] in worker.children()
    assert_valid_histories(app)


def test_os_exit_in_a_task_is_a_failure_with_the_exit_code(app, workers):
    worker = workers.start(processes=1)
    crashed = tasks.crash.enqueue(3)
    fine = tasks.add.enqueue(1, 2)
    wait_for(lambda: all_final(app), "every job to finish", diagnose=worker.diagnose)

    job = crashed.get()
    assert (job.status, job.attempts) == ("failed", 1)  # no retries configured: final
    assert job.error == "worker process exited with status 3 while running the job"
    failed = crashed.events()[-1]
    assert failed.kind == "failed"
    assert failed.detail["exit_code"] == 3
    assert "signal" not in failed.detail
    assert fine.get().result == 3
    assert_valid_histories(app)


def test_a_result_that_is_not_json_fails_the_job_with_a_clear_error(app, workers):
    worker = workers.start(processes=1)
    handle = tasks.return_non_json.enqueue()
    job = wait_for(lambda: (j := handle.get()).is_final and j, "the job", diagnose=worker.diagnose)

    assert (job.status, job.attempts, job.result) == ("failed", 1, None)
    assert job.error is not None
    assert "result of return_non_json is a set, which is not JSON" in job.error
    assert handle.events()[-1].detail["reason"] == "bad_result"
    assert_valid_histories(app)


def test_retries_with_backoff_eventually_succeed(app, workers):
    worker = workers.start(processes=2)
    flaky = tasks.fail_then_succeed.enqueue(2)
    hopeless = tasks.fail_always.enqueue("no luck")
    wait_for(lambda: all_final(app), "every job to finish", diagnose=worker.diagnose)

    job = flaky.get()
    assert (job.status, job.attempts, job.result) == ("succeeded", 3, 3)
    events = flaky.events()
    assert kinds(events).count("failed") == 2
    assert [e.attempt for e in events if e.kind == "failed"] == [1, 2]
    first_failure = next(event for event in events if event.kind == "failed")
    assert "attempt 1 fails on purpose" in first_failure.detail["error"]
    assert "Traceback" in first_failure.detail["traceback"]
    # Backoff: each retry waits longer than the one before (0.05s, then 0.1s, +-25%).
    delays = [
        (datetime.fromisoformat(e.detail["run_at"]) - e.at).total_seconds()
        for e in events
        if e.kind == "retry_scheduled"
    ]
    assert len(delays) == 2
    assert 0 < delays[0] < delays[1]

    job = hopeless.get()
    assert (job.status, job.attempts) == ("failed", 3)  # retries=2: three attempts in all
    assert "RuntimeError: no luck" in (job.error or "")
    assert kinds(hopeless.events()).count("retry_scheduled") == 2
    assert hopeless.events()[-1].kind == "failed"
    assert_valid_histories(app)


def test_max_tasks_per_child_recycles_children_without_failing_jobs(app, workers, record_file):
    per_child = 2
    worker = workers.start(processes=2, max_tasks_per_child=per_child)
    handles = app.enqueue_many(tasks.record.prepare(record_file) for _ in range(40))
    wait_for(lambda: all_final(app), "every job to finish", diagnose=worker.diagnose)

    assert [h.get().status for h in handles] == ["succeeded"] * len(handles)
    assert not [e for e in all_events(app) if e.kind == "failed"]
    runs_per_pid = Counter(line["pid"] for line in tasks.read_lines(record_file))
    assert sum(runs_per_pid.values()) == len(handles)
    assert max(runs_per_pid.values()) <= per_child
    assert len(runs_per_pid) >= len(handles) // per_child
    # A child that ran its quota has exited; the worker keeps its two processes.
    spent = [pid for pid, count in runs_per_pid.items() if count == per_child]
    assert spent
    wait_for(
        lambda: not any(process_alive(pid) for pid in spent),
        "the recycled children to exit",
        diagnose=worker.diagnose,
    )
    wait_for(lambda: len(worker.children()) == 2, "two children", diagnose=worker.diagnose)
    assert worker.alive(), worker.diagnose()
    assert_valid_histories(app)
