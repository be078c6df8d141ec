"""``async def`` tasks run in the worker's children on an event loop of their own per
job, with the same history, retries, timeouts and cancellation as sync ones; ``map``
takes async functions too. Both backends."""

from __future__ import annotations

import tasktrail
from tasktrail.lifecycle import check_history
from tests.integration import tasks
from tests.integration.helpers import wait_for


def kinds(app: tasktrail.App, job_id: int) -> list[str]:
    return [event.kind for event in app.events(job_id)]


def test_async_tasks_run_fail_retry_and_time_out_like_sync_ones(
    app: tasktrail.App, workers, record_file: str
) -> None:
    fetched = tasks.async_fetch.enqueue(record_file, 4, ref=("website", 3))
    failing = tasks.async_fail.enqueue("the API said no")
    slow = tasks.async_slow.enqueue(record_file, 30.0)
    worker = workers.start(processes=2)
    jobs = (fetched, failing, slow)
    wait_for(lambda: all(job.get().is_final for job in jobs), "the jobs to end",
             timeout=60, diagnose=worker.diagnose)  # fmt: skip

    done = fetched.get()
    assert (done.status, done.result) == ("succeeded", {"job": fetched.id, "pages": [0, 1, 4, 9]})
    assert kinds(app, fetched.id) == ["enqueued", "started", "succeeded"]

    failed = failing.get()
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert failed.error is not None and "ValueError: the API said no" in failed.error
    tracebacks = [
        e.detail.get("traceback", "") for e in app.events(failing.id) if e.kind == "failed"
    ]
    assert len(tracebacks) == 2 and all("async_fail" in tb for tb in tracebacks)

    # the timeout really stops it (SIGTERM inside the event loop), its finally runs,
    # and the retry does the same
    timed_out = slow.get()
    assert (timed_out.status, timed_out.attempts) == ("failed", 2)
    assert kinds(app, slow.id).count("timeout") == 2
    lines = [line for line in tasks.read_lines(record_file) if line["job"] == slow.id]
    assert [(line["attempt"], line["phase"]) for line in lines] == [
        (1, "start"), (1, "finally"), (2, "start"), (2, "finally"),
    ]  # fmt: skip
    for job in jobs:
        assert check_history(app.events(job.id), job.get().status) == []


def test_a_running_async_task_is_cancelled(app: tasktrail.App, workers, record_file: str) -> None:
    job = tasks.async_slow.enqueue(record_file, 30.0)
    worker = workers.start(processes=1)
    wait_for(lambda: any(line["job"] == job.id for line in tasks.read_lines(record_file)),
             "the job to start", diagnose=worker.diagnose)  # fmt: skip
    app.cancel(job.id, reason="no longer needed")
    wait_for(lambda: job.get().is_final, "the job to be stopped", diagnose=worker.diagnose)
    assert job.get().status == "cancelled"
    phases = [line["phase"] for line in tasks.read_lines(record_file) if line["job"] == job.id]
    assert phases == ["start", "finally"]


def test_map_takes_an_async_function(tmp_path) -> None:
    results = list(tasktrail.App(f"sqlite:///{tmp_path / 'unused.db'}").map(
        tasks.double_async, [1, 2, 3], processes=2, state=tmp_path / "map.db"
    ))  # fmt: skip
    assert [(r.ok, r.result) for r in results] == [(True, 2), (True, 4), (True, 6)]
