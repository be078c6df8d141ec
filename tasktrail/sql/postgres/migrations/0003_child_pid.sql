-- Migration 3: the child process that ran an attempt, named on its events (the
-- `started` event and how the attempt ended), and in the job_history view.
-- A nullable column without a default: PostgreSQL adds it without rewriting the table
-- (a brief ACCESS EXCLUSIVE lock on events, whatever its size).

ALTER TABLE tasktrail.events ADD COLUMN IF NOT EXISTS child_pid integer;

CREATE OR REPLACE VIEW tasktrail.job_history AS
SELECT e.id, e.job_id, j.task, j.ref_type, j.ref_id, e.at, e.kind, e.attempt,
       w.name AS worker_name, w.host, w.pid, e.detail, e.child_pid
FROM tasktrail.events e
JOIN tasktrail.jobs j ON j.id = e.job_id
LEFT JOIN tasktrail.workers w ON w.id = e.worker_id;
