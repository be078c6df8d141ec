-- Migration 5 (SQLite): lineage, parent_id and root_id (see the PostgreSQL migration of
-- the same number; a root's root_id is stored NULL and read as its own id).

ALTER TABLE jobs ADD COLUMN parent_id INTEGER;
ALTER TABLE jobs ADD COLUMN root_id INTEGER;
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_root ON jobs (root_id) WHERE root_id IS NOT NULL;

DROP VIEW IF EXISTS job_history;
CREATE VIEW job_history AS
SELECT e.id, e.job_id, j.task, j.ref_type, j.ref_id, e.at, e.kind, e.attempt,
       w.name AS worker_name, w.host, w.pid, e.detail, e.child_pid, j.parent_id,
       coalesce(j.root_id, j.id) AS root_id
FROM events e
JOIN jobs j ON j.id = e.job_id
LEFT JOIN workers w ON w.id = e.worker_id;
