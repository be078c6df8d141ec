"""``--log-format json``: every line a worker writes is one JSON object, a job's line
with its job id, task, ref, attempt, worker and child pid; a task's own log line carries
the job it runs. Both backends."""

from __future__ import annotations

import json

import tasktrail
from tests.integration import tasks
from tests.integration.helpers import wait_for


def test_a_worker_logs_one_json_object_per_line_with_the_job(app: tasktrail.App, workers) -> None:
    logged = tasks.log_a_line.enqueue("website 3", ref=("website", 3))
    failed = tasks.fail_always.enqueue("the API said no")
    worker = workers.start(processes=1, log_format="json")
    wait_for(
        lambda: logged.get().is_final and failed.get().is_final,
        "both jobs to end",
        diagnose=worker.diagnose,
    )
    worker.signal(15)
    assert worker.wait() == 0, worker.diagnose()
    lines = [json.loads(line) for line in worker.log().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message", "pid"} <= set(x) for x in lines)
    [own] = [line for line in lines if line["logger"] == "shop.sync"]
    assert own["message"] == "synced website 3" and own["level"] == "warning"
    assert (own["job_id"], own["task"], own["ref"], own["attempt"]) == (
        logged.id, "log_a_line", "website:3", 1,
    )  # fmt: skip
    [done] = [line for line in lines if line.get("job_id") == logged.id and line is not own]
    assert done["logger"] == "tasktrail.worker.jobs" and done["worker"] == worker.name
    assert (
        done["child_pid"] == own["pid"] != done["pid"]
    )  # the child ran it; its supervisor said so
    attempts = [line for line in lines if line.get("job_id") == failed.id]
    assert [line["attempt"] for line in attempts] == [1, 2, 3]
    assert all(
        line["level"] == "warning" and "the API said no" in line["message"] for line in attempts
    )
