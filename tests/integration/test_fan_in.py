"""Fan-in with real workers: a task fans out jobs and enqueues one that waits for them all
(``after=``); the database releases it once the last one has ended, it runs exactly once
and reads their results; one of them failing cancels it, naming that job."""

from __future__ import annotations

import json

import tasktrail

from . import tasks
from .helpers import assert_valid_histories, wait_for
from .test_worker_control import tt


def test_a_job_waiting_for_many_runs_once_after_the_last_and_reads_their_results(
    app: tasktrail.App, worker_dsn: str, workers
) -> None:
    first = workers.start(processes=2)
    workers.start(processes=1)
    values = list(range(1, 9))
    root = tasks.count_then_sum.enqueue(values, ref=("website", 3))
    wait_for(
        lambda: (
            len(app.jobs(limit=None)) == 1 + 8 + 1
            and all(job.is_final for job in app.jobs(limit=None))
        ),
        "the fan-out and the fan-in to end",
        diagnose=first.diagnose,
    )
    squares = app.job(root.id).result
    [kpi] = app.jobs(task=tasks.total.name)
    assert kpi.status == "succeeded"
    assert kpi.result == {"jobs": sorted(squares), "sum": sum(v * v for v in values)}
    assert (kpi.parent_id, kpi.after_policy, kpi.waiting_for) == (root.id, "succeeded", 0)
    events = app.events(kpi.id)
    assert [e.kind for e in events][:3] == ["enqueued", "waiting", "ready"]
    assert [e.kind for e in events].count("started") == 1
    last_end = max(app.job(job_id).finished_at for job_id in squares)
    assert events[2].at == last_end  # released by the last one's outcome, no later
    assert events[3].at >= last_end  # and began after it
    shown = tt(worker_dsn, "show", str(kpi.id))
    assert f"{squares[0]} succeeded" in shown and "(policy succeeded)" in shown
    assert_valid_histories(app)


def test_one_failure_cancels_the_waiting_job_naming_it(
    app: tasktrail.App, worker_dsn: str, workers
) -> None:
    worker = workers.start(processes=2)
    root = tasks.count_then_sum.enqueue([2, 3, 4], fail_one=True)
    wait_for(
        lambda: len(app.jobs(limit=None)) == 5 and all(j.is_final for j in app.jobs(limit=None)),
        "every job to end",
        diagnose=worker.diagnose,
    )
    failed_square = app.job(root.id).result[0]
    assert app.job(failed_square).status == "failed"
    [kpi] = app.jobs(task=tasks.total.name)
    assert kpi.status == "cancelled" and kpi.attempts == 0
    assert kpi.error == f"cancelled: job {failed_square} it waited for ended failed"
    listed = json.loads(tt(worker_dsn, "jobs", "--status", "cancelled", "--json"))
    assert [job["id"] for job in listed] == [kpi.id]
    assert_valid_histories(app)


def test_the_cli_enqueues_a_waiting_job_and_shows_what_it_waits_for(
    app: tasktrail.App, worker_dsn: str
) -> None:
    first, second = tasks.noop.enqueue(), tasks.noop.enqueue()
    out = tt(
        worker_dsn, "enqueue", "--app", "tests.integration.tasks:app", "noop",
        "--after", str(first.id), "--after", str(second.id), "--after-policy", "finished",
    )  # fmt: skip
    [waiting] = app.jobs(status="waiting")
    assert out.strip() == f"enqueued job {waiting.id} (noop, queue default, waiting)"
    assert "after:" in tt(worker_dsn, "show", str(waiting.id))
    assert f"{first.id} queued, {second.id} queued: waiting for 2 (policy finished)" in tt(
        worker_dsn, "show", str(waiting.id)
    )
    tt(worker_dsn, "cancel", str(first.id))
    assert app.job(waiting.id).waiting_for == 1
    tt(worker_dsn, "cancel", str(second.id))  # "finished": it runs however they ended
    assert app.job(waiting.id).status == "queued"
    assert "cancelled (policy finished)" in tt(worker_dsn, "show", str(waiting.id))
