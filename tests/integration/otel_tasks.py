"""An app traced with OpenTelemetry's SDK, for tests/integration/test_tracing.py.

Importing it sets up a tracer provider whose spans go, one JSON object per line, to the
file ``TASKTRAIL_TEST_SPANS`` names: the enqueuer, the worker's supervisor and its
forked children each append theirs (a span per write, under the pipe-buffer size, with
O_APPEND: lines never interleave). Nothing is set up without that variable.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import tasktrail

app = tasktrail.App()
_tracer = trace.get_tracer("tests.otel_tasks")


class LineExporter(SpanExporter):
    """Each span as a line of JSON: names, ids, parent, kind, status, attributes, pid."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            context = span.get_span_context()
            line = json.dumps(
                {
                    "name": span.name,
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                    "kind": span.kind.name,
                    "status": span.status.status_code.name,
                    "attributes": dict(span.attributes or {}),
                    "start": span.start_time,
                    "end": span.end_time,
                    "pid": os.getpid(),
                }
            )
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS


def read_spans(path: str) -> list[dict[str, Any]]:
    try:
        with open(path) as lines:
            return [json.loads(line) for line in lines if line.strip()]
    except FileNotFoundError:
        return []


if os.environ.get("TASKTRAIL_TEST_SPANS"):
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(LineExporter(os.environ["TASKTRAIL_TEST_SPANS"]))
    )
    trace.set_tracer_provider(provider)


@app.task(name="traced.fetch", retries=0)
def fetch(site: int) -> int:
    """Works in a span of its own and enqueues a follow-up."""
    with _tracer.start_as_current_span("fetch the front page"):
        follow.enqueue(site * 100, ref=("article", site * 100))
    return site


@app.task(name="traced.follow", retries=0)
def follow(article: int) -> int:
    return article


@app.task(name="traced.slow", retries=0, timeout=1.0)
def slow() -> None:
    time.sleep(60)


@app.task(name="traced.boom", retries=0)
def boom() -> None:
    raise ValueError("the API said no")
