-- Migration 11 (SQLite): the enqueuer's trace context (tasktrail.tracing), as in
-- PostgreSQL's migration 11. NULL when nothing is traced.

ALTER TABLE jobs ADD COLUMN trace_context TEXT;
