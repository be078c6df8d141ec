"""tasktrail.tracing with the SDK's in-memory exporter: the enqueue's span and the
context its jobs carry, an attempt's span from it, and nothing at all (no span, no
stored context) while no tracer provider is set up."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tasktrail
from tasktrail import tracing
from tasktrail.job import HeldJob, Outcome, Ref

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """A provider for this test only (the global one can be set once per process)."""
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    monkeypatch.setattr(tracing.trace, "get_tracer_provider", lambda: provider)
    return exported


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tasktrail.App]:
    app = tasktrail.App(f"sqlite:///{tmp_path / 'jobs.db'}")

    @app.task(name="kpi")
    def kpi(site: int) -> int:
        return site

    try:
        yield app
    finally:
        app.close()


def stored_context(app: tasktrail.App, job_id: int) -> str | None:
    with closing(sqlite3.connect(app.dsn.removeprefix("sqlite:///"))) as conn:
        [(text,)] = conn.execute("SELECT trace_context FROM jobs WHERE id = ?", (job_id,))
    return text  # type: ignore[no-any-return]


def held(job_id: int, trace_context: str | None) -> HeldJob:
    return HeldJob(
        id=job_id, task="kpi", queue="default", status="running", ref=Ref("website", "3"),
        priority=0, args_json="[3]", kwargs_json="{}", attempts=1, max_attempts=1,
        timeout=None, worker_id=1, child_pid=4321, trace_context=trace_context,
    )  # fmt: skip


def test_nothing_is_traced_or_stored_without_a_tracer_provider(app: tasktrail.App) -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert tracing.tracer() is None
    handle = app.get_task("kpi").enqueue(3)
    assert stored_context(app, handle.id) is None
    spans = tracing.AttemptSpans("w1")
    spans.started([held(handle.id, None)], T0)
    assert not spans and spans.carrier(handle.id) is None


def test_an_enqueue_is_a_span_whose_context_its_jobs_keep(
    app: tasktrail.App, exporter: InMemorySpanExporter
) -> None:
    tracer = tracing.trace.get_tracer_provider().get_tracer("test")
    with tracer.start_as_current_span("POST /websites/3") as request:
        handle = app.get_task("kpi").enqueue(3, ref=("website", 3))
    [enqueue, parent] = exporter.get_finished_spans()
    assert parent.context.span_id == request.get_span_context().span_id
    assert enqueue.name == "tasktrail.enqueue kpi"
    assert enqueue.kind is trace.SpanKind.PRODUCER
    assert enqueue.parent is not None and enqueue.parent.span_id == parent.context.span_id
    assert dict(enqueue.attributes or {}) == {
        "messaging.system": "tasktrail",
        "messaging.destination.name": "default",
        "tasktrail.task": "kpi",
        "tasktrail.queue": "default",
        "tasktrail.ref": "website:3",
        "tasktrail.job_count": 1,
        "tasktrail.job_id": handle.id,
    }
    carrier = json.loads(stored_context(app, handle.id) or "{}")
    trace_id, span_id = f"{enqueue.context.trace_id:032x}", f"{enqueue.context.span_id:016x}"
    assert list(carrier) == ["traceparent"]
    assert carrier["traceparent"].startswith(f"00-{trace_id}-{span_id}-")


def test_a_batch_is_one_span_and_every_job_carries_it(
    app: tasktrail.App, exporter: InMemorySpanExporter
) -> None:
    kpi = app.get_task("kpi")
    handles = app.enqueue_many([kpi.prepare(site) for site in range(3)])
    [enqueue] = exporter.get_finished_spans()
    assert enqueue.attributes is not None and enqueue.attributes["tasktrail.job_count"] == 3
    assert "tasktrail.job_id" not in enqueue.attributes
    assert len({stored_context(app, handle.id) for handle in handles}) == 1


def test_an_attempt_span_starts_at_its_start_and_ends_with_its_outcome(
    exporter: InMemorySpanExporter,
) -> None:
    tracer = tracing.trace.get_tracer_provider().get_tracer("test")
    with tracer.start_as_current_span("enqueue") as enqueue:
        carrier: dict[str, str] = {}
        tracing.propagate.inject(carrier)
    spans = tracing.AttemptSpans("hostA")
    spans.started([held(7, json.dumps(carrier))], T0)
    assert spans
    # the child runs the task in the attempt's context
    passed = json.loads(spans.carrier(7) or "{}")
    with tracing.attached(json.dumps(passed)), tracer.start_as_current_span("the task's own work"):
        pass
    spans.ended(7, Outcome(7, 1, "timeout", T0 + timedelta(seconds=2), error="timed out"))
    assert not spans
    found = {span.name: span for span in exporter.get_finished_spans()}
    work, attempt = found["the task's own work"], found["tasktrail.run kpi"]
    assert attempt.parent is not None
    assert attempt.parent.span_id == enqueue.get_span_context().span_id
    assert attempt.kind is trace.SpanKind.CONSUMER
    assert (attempt.start_time, attempt.end_time) == (
        int(T0.timestamp() * 1e9), int((T0 + timedelta(seconds=2)).timestamp() * 1e9),
    )  # fmt: skip
    assert attempt.status.status_code is trace.StatusCode.ERROR
    assert attempt.attributes is not None
    assert attempt.attributes["tasktrail.outcome"] == "timeout"
    assert attempt.attributes["tasktrail.worker"] == "hostA"
    assert attempt.attributes["process.pid"] == 4321
    assert work.parent is not None and work.parent.span_id == attempt.context.span_id
    # ended once: a second outcome of the job (rejected, say) ends nothing
    spans.ended(7, Outcome(7, 1, "failed", T0))
    assert len(exporter.get_finished_spans()) == 3


def test_a_context_that_is_not_json_makes_a_root_span(exporter: InMemorySpanExporter) -> None:
    spans = tracing.AttemptSpans("hostA")
    spans.started([held(8, "not json"), held(9, "[1]")], T0)
    spans.ended(8, Outcome(8, 1, "succeeded", T0))
    spans.ended(9, Outcome(9, 1, "succeeded", T0))
    assert [span.parent for span in exporter.get_finished_spans()] == [None, None]


def test_a_job_its_worker_let_go_of_ends_its_span_as_lost(exporter: InMemorySpanExporter) -> None:
    spans = tracing.AttemptSpans("hostA")
    spans.started([held(10, None)], T0)
    spans.lost(10)
    spans.lost(10)  # once only
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["tasktrail.outcome"] == "lost"
    assert span.status.status_code is trace.StatusCode.ERROR
    assert not spans
