-- Migration 11: the enqueuer's trace context (tasktrail.tracing, the otel extra): a job
-- enqueued inside a traced span keeps that span's W3C context (traceparent, tracestate)
-- as JSON, and each of its attempts is a span below it. NULL when nothing is traced. A
-- nullable column without a default: no rewrite, no index.

ALTER TABLE tasktrail.jobs ADD COLUMN IF NOT EXISTS trace_context text;
