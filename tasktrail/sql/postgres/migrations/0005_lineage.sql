-- Migration 5: lineage. A job enqueued while another runs (a follow-up, from the task's
-- own process) names it: parent_id is that job, root_id the root of its tree. A root has
-- no root_id stored (NULL, read as its own id: coalesce(root_id, id)), so an enqueue
-- outside a task writes nothing more than before. Nullable columns without defaults: no
-- rewrite. The partial indexes hold follow-ups only: building them reads the table once
-- (minutes at 10M jobs, blocking writes meanwhile); a big installation can create them
-- first with CREATE INDEX CONCURRENTLY under the same names, and this migration skips
-- them.

ALTER TABLE tasktrail.jobs
    ADD COLUMN IF NOT EXISTS parent_id bigint,
    ADD COLUMN IF NOT EXISTS root_id bigint;

CREATE INDEX IF NOT EXISTS jobs_parent ON tasktrail.jobs (parent_id)
    WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_root ON tasktrail.jobs (root_id)
    WHERE root_id IS NOT NULL;

CREATE OR REPLACE VIEW tasktrail.job_history AS
SELECT e.id, e.job_id, j.task, j.ref_type, j.ref_id, e.at, e.kind, e.attempt,
       w.name AS worker_name, w.host, w.pid, e.detail, e.child_pid, j.parent_id,
       coalesce(j.root_id, j.id) AS root_id
FROM tasktrail.events e
JOIN tasktrail.jobs j ON j.id = e.job_id
LEFT JOIN tasktrail.workers w ON w.id = e.worker_id;

CREATE OR REPLACE VIEW tasktrail.latest_by_ref AS
SELECT DISTINCT ON (ref_type, ref_id, task)
       ref_type, ref_id, task, id AS job_id, status, attempts, created_at, started_at,
       finished_at, finished_at - started_at AS run_time, error, parent_id,
       coalesce(root_id, id) AS root_id
FROM tasktrail.jobs
WHERE ref_type IS NOT NULL
ORDER BY ref_type, ref_id, task, id DESC;
