"""OpenTelemetry (the otel extra): an enqueue's span and each attempt's, the attempt a
child of the request that enqueued it, whichever process runs it; a task's own spans
below its attempt; a follow-up's attempt below the attempt that enqueued it; timeouts
and failures as error spans. Real processes: an enqueuer, a worker's supervisor and its
forked children, each exporting to one file. Both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration import otel_tasks
from tests.integration.conftest import REPO_ROOT
from tests.integration.helpers import wait_for

ENQUEUER = """
import json
from opentelemetry import trace
from tests.integration import otel_tasks as t

with trace.get_tracer("shop").start_as_current_span(
    "POST /websites/3/refresh", kind=trace.SpanKind.SERVER
):
    ids = [t.fetch.enqueue(3, ref=("website", 3)).id, t.slow.enqueue().id, t.boom.enqueue().id]
print(json.dumps(ids))
"""


def one(spans: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [
        span
        for span in spans
        if all(
            span.get(key) == value or span["attributes"].get(key) == value
            for key, value in match.items()
        )
    ]
    assert len(found) == 1, f"{len(found)} spans match {match}: {spans}"
    return found[0]


def test_an_attempt_is_a_span_below_the_request_that_enqueued_it(
    worker_dsn: str, workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans_file = str(tmp_path / "spans.jsonl")
    monkeypatch.setenv("TASKTRAIL_TEST_SPANS", spans_file)
    enqueued = subprocess.run(
        [sys.executable, "-c", ENQUEUER],
        check=False, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        env={**os.environ, "TASKTRAIL_DSN": worker_dsn},
    )  # fmt: skip
    assert enqueued.returncode == 0, enqueued.stderr
    fetched, slow, boom = json.loads(enqueued.stdout)
    app = otel_tasks.app
    app.configure(worker_dsn)
    try:
        worker = workers.start(app_spec="tests.integration.otel_tasks:app", processes=2)
        followed: list[int] = []

        def all_ended() -> bool:
            followed[:] = [job.id for job in app.jobs(task="traced.follow")]
            ids = [fetched, slow, boom, *followed]
            return len(followed) == 1 and all(app.job(job_id).is_final for job_id in ids)

        wait_for(all_ended, "the jobs and the follow-up to end", timeout=60,
                 diagnose=worker.diagnose)  # fmt: skip
        [follow] = followed
        wait_for(
            lambda: len([s for s in otel_tasks.read_spans(spans_file) if s["kind"] == "CONSUMER"])
            == 4,
            "the four attempts' spans", diagnose=worker.diagnose,
        )  # fmt: skip
        spans = otel_tasks.read_spans(spans_file)
        started = {
            job_id: next(e for e in app.events(job_id) if e.kind == "started")
            for job_id in (fetched, follow)
        }
        assert app.job(slow).status == app.job(boom).status == "failed"
    finally:
        app.close()

    request = one(spans, name="POST /websites/3/refresh")
    trace_id = request["trace_id"]
    assert all(span["trace_id"] == trace_id for span in spans), "one trace from the request"

    enqueue = one(spans, name="tasktrail.enqueue traced.fetch")
    assert (enqueue["kind"], enqueue["parent_id"]) == ("PRODUCER", request["span_id"])
    assert enqueue["attributes"]["tasktrail.job_id"] == fetched
    assert enqueue["pid"] == request["pid"]

    attempt = one(spans, name="tasktrail.run traced.fetch")
    assert attempt["parent_id"] == enqueue["span_id"]
    assert attempt["attributes"] == {
        "messaging.system": "tasktrail",
        "messaging.destination.name": "default",
        "tasktrail.task": "traced.fetch",
        "tasktrail.queue": "default",
        "tasktrail.ref": "website:3",
        "tasktrail.job_id": fetched,
        "tasktrail.attempt": 1,
        "tasktrail.worker": worker.name,
        "process.pid": started[fetched].child_pid,
        "tasktrail.outcome": "succeeded",
    }
    assert attempt["status"] == "UNSET"
    # the supervisor writes the attempt's span, from its history's start to its end
    assert attempt["pid"] == worker.pid
    assert attempt["start"] == int(started[fetched].at.timestamp() * 1e9)

    # the task's own span, in its child, below its attempt; the follow-up it enqueued
    # there, and that one's attempt, below it
    inner = one(spans, name="fetch the front page")
    assert (inner["parent_id"], inner["pid"]) == (attempt["span_id"], started[fetched].child_pid)
    follow_enqueue = one(spans, name="tasktrail.enqueue traced.follow")
    assert follow_enqueue["parent_id"] == inner["span_id"]
    assert follow_enqueue["attributes"]["tasktrail.job_id"] == follow
    follow_attempt = one(spans, name="tasktrail.run traced.follow")
    assert follow_attempt["parent_id"] == follow_enqueue["span_id"]
    assert follow_attempt["attributes"]["tasktrail.ref"] == "article:300"

    # a timeout and a failure are error spans, with the outcome
    for job_id, task, outcome in (
        (slow, "traced.slow", "timeout"),
        (boom, "traced.boom", "failed"),
    ):
        span = one(spans, name=f"tasktrail.run {task}")
        assert span["parent_id"] == one(spans, name=f"tasktrail.enqueue {task}")["span_id"]
        assert (span["status"], span["attributes"]["tasktrail.outcome"]) == ("ERROR", outcome)
        assert span["attributes"]["tasktrail.job_id"] == job_id
