-- Migration 3 (SQLite): the child process that ran an attempt, named on its events (the
-- `started` event and how the attempt ended), and in the job_history view.

ALTER TABLE events ADD COLUMN child_pid INTEGER;

DROP VIEW IF EXISTS job_history;
CREATE VIEW job_history AS
SELECT e.id, e.job_id, j.task, j.ref_type, j.ref_id, e.at, e.kind, e.attempt,
       w.name AS worker_name, w.host, w.pid, e.detail, e.child_pid
FROM events e
JOIN jobs j ON j.id = e.job_id
LEFT JOIN workers w ON w.id = e.worker_id;
