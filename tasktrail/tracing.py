"""OpenTelemetry spans for enqueues and attempts (the ``otel`` extra).

Nothing here costs anything unless a tracer provider is configured: without the
``opentelemetry-api`` package, or with only the API's default (no SDK set up), every
function returns at once and no trace context is stored.

- An enqueue (``App.enqueue_many``, and so ``Task.enqueue``) runs in a span
  ``tasktrail.enqueue`` (kind PRODUCER), a child of whatever span is current: a web
  request, a task that enqueues a follow-up. Its context (W3C ``traceparent``, and
  ``tracestate`` if any) is stored with each job it inserts, ``jobs.trace_context``.
- Each attempt is a span ``tasktrail.run <task>`` (kind CONSUMER), a child of the
  enqueue's span, whichever host runs it and however much later. The supervisor opens
  it when the job starts (its ``started`` event) and ends it with the attempt's outcome,
  so an attempt killed at its timeout, cancelled or lost with its process has its span
  as much as one that returned. Its child process runs the task inside the attempt's
  context: spans the task makes (an HTTP client's, a database driver's) nest below it,
  exported by the child if the application sets up its provider there too (the SDK's
  batch processor restarts its thread after a fork).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import HeldJob, NewJob, Outcome

__all__ = ["AttemptSpans", "attached", "enqueue_span", "tracer"]

#: The instrumentation scope of tasktrail's spans.
SCOPE = "tasktrail"
#: Outcomes whose span is an error (the attempt ended by failing).
_ERRORS = frozenset({"failed", "timeout", "lost"})

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - the otel extra is not installed
    trace = None  # type: ignore[assignment]


def tracer() -> Any | None:
    """tasktrail's tracer, or ``None`` when no tracer provider is configured (the extra
    absent, or the API's default provider): then nothing is traced."""
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer(SCOPE)


def _attributes(task: str | None, queue: str, ref: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "tasktrail",
        "messaging.destination.name": queue,
    }
    if task is not None:
        attributes["tasktrail.task"] = task
    attributes["tasktrail.queue"] = queue
    if ref is not None:
        attributes["tasktrail.ref"] = str(ref)
    return attributes


class EnqueueSpan:
    """What an enqueue's span gives the insert: the trace context its jobs carry."""

    def __init__(self, span: Any, carrier: str | None) -> None:
        self._span = span
        self.carrier = carrier

    def jobs(self, jobs: Sequence[NewJob]) -> Sequence[NewJob]:
        """``jobs`` carrying this span's context (unchanged when nothing is traced)."""
        if self.carrier is None:
            return jobs
        return [job._replace(trace_context=self.carrier) for job in jobs]

    def inserted(self, ids: Sequence[int]) -> None:
        if self._span is not None:
            self._span.set_attribute("tasktrail.job_count", len(ids))
            if len(ids) == 1:
                self._span.set_attribute("tasktrail.job_id", ids[0])


_UNTRACED = EnqueueSpan(None, None)


@contextmanager
def enqueue_span(jobs: Sequence[NewJob]) -> Iterator[EnqueueSpan]:
    """A span around inserting ``jobs`` (one span for a batch), and their context."""
    found = tracer() if jobs else None
    if found is None:
        yield _UNTRACED
        return
    first = jobs[0]
    # (a batch's span names what its jobs share: the task if one, the first's queue, the
    # ref of a single job)
    task = first.task if all(job.task == first.task for job in jobs) else None
    name = "tasktrail.enqueue" if task is None else f"tasktrail.enqueue {task}"
    attributes = _attributes(task, first.queue, first.ref if len(jobs) == 1 else None)
    with found.start_as_current_span(
        name, kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield EnqueueSpan(span, json.dumps(carrier, sort_keys=True) if carrier else None)


def _context_of(text: str | None) -> Any:
    if not text:
        return None
    try:
        carrier = json.loads(text)
    except ValueError:
        return None  # a row written by hand: the attempt is a root span
    if not isinstance(carrier, dict):
        return None
    return propagate.extract({str(k): str(v) for k, v in carrier.items()})


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


class AttemptSpans:
    """The supervisor's open attempt spans, by job id: opened when a job starts, ended
    with its outcome. Empty and free when nothing is traced."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._open: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return bool(self._open)

    def started(self, jobs: Sequence[HeldJob], at: datetime) -> None:
        """Open a span for each of ``jobs``, which started at ``at``."""
        found = tracer() if jobs else None
        if found is None:
            return
        start = _ns(at)
        for job in jobs:
            attributes = _attributes(job.task, job.queue, job.ref)
            attributes.update(
                {
                    "tasktrail.job_id": job.id,
                    "tasktrail.attempt": job.attempts,
                    "tasktrail.worker": self.worker,
                }
            )
            if job.child_pid is not None:
                attributes["process.pid"] = job.child_pid
            self._open[job.id] = found.start_span(
                f"tasktrail.run {job.task}",
                context=_context_of(job.trace_context),
                kind=trace.SpanKind.CONSUMER,
                attributes=attributes,
                start_time=start,
            )

    def carrier(self, job_id: int) -> str | None:
        """The context of a job's open attempt, for its child to run the task in."""
        span = self._open.get(job_id)
        if span is None:
            return None
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return json.dumps(carrier, sort_keys=True)

    def ended(self, job_id: int, outcome: Outcome) -> None:
        """End a job's attempt span with its outcome (nothing if none is open)."""
        span = self._open.pop(job_id, None)
        if span is None:
            return
        span.set_attribute("tasktrail.outcome", outcome.kind)
        if outcome.kind in _ERRORS:
            span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.error or outcome.kind))
        span.end(end_time=_ns(outcome.finished_at))

    def lost(self, job_id: int) -> None:
        """End a job's attempt span with no outcome of this worker's: it was declared
        lost, and the job's recovery (``lost``) is another's to write."""
        span = self._open.pop(job_id, None)
        if span is not None:
            span.set_attribute("tasktrail.outcome", "lost")
            span.set_status(trace.Status(trace.StatusCode.ERROR, "its worker was declared lost"))
            span.end()


_NOTHING = nullcontext()


def attached(carrier: str | None) -> AbstractContextManager[Any]:
    """A block run in the context ``carrier`` names (a child running a task)."""
    if carrier is None or trace is None:
        return _NOTHING
    return _attached(carrier)


@contextmanager
def _attached(carrier: str) -> Iterator[None]:
    token = otel_context.attach(_context_of(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)
