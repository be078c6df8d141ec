-- Migration 10 (SQLite): the fleet-wide limits are kept by the claim itself, in the write
-- transaction (backends/sqlite/jobs.py candidates), and jobs_release_dependents fires
-- only for statements that name `dependents`: a claim, and an outcome of a job nobody
-- waits for, run no trigger (each trigger cost every such row its condition, about 5%
-- of the no-op drain). See schema.sql.
-- The starts a rate counts are kept in seconds since the Unix epoch, to the microsecond
-- as the history is (a Julian day from julianday() is to the millisecond).

UPDATE job_starts SET at = (at - 2440587.5) * 86400.0;

-- A job under a lock starts no earlier than the last end of its key's jobs (claim_start
-- reads it through this index).
CREATE INDEX IF NOT EXISTS jobs_lock_ended ON jobs (lock_key, finished_at)
    WHERE lock_key IS NOT NULL;

DROP TRIGGER IF EXISTS jobs_admit;
DROP TRIGGER IF EXISTS jobs_release_dependents;
CREATE TRIGGER IF NOT EXISTS jobs_release_dependents
AFTER UPDATE OF dependents ON jobs
WHEN NEW.dependents > 0 AND NEW.status IN ('succeeded', 'failed', 'cancelled')
BEGIN
    INSERT INTO events (job_id, at, kind, attempt, detail)
    SELECT j.id,
           -- released: when the last of them ended, which is not always the one whose
           -- outcome came last (outcomes are written in batches, after the fact)
           CASE WHEN j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                THEN max(coalesce(NEW.finished_at, j.created_at), j.created_at)
                ELSE max(coalesce(NEW.finished_at, j.created_at), j.created_at, coalesce((
                    SELECT max(p.finished_at) FROM job_after b JOIN jobs p ON p.id = b.after_id
                    WHERE b.job_id = j.id), j.created_at)) END,
           CASE WHEN j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                THEN 'cancelled' ELSE 'ready' END,
           0,
           CASE WHEN j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                THEN json_object('after', NEW.id, 'after_status', NEW.status,
                                 'reason', 'job ' || NEW.id || ' it waited for ended '
                                           || NEW.status)
                ELSE json_object('after', NEW.id, 'after_status', NEW.status) END
    FROM job_after a JOIN jobs j ON j.id = a.job_id
    WHERE a.after_id = NEW.id AND a.after_status IS NULL AND j.status = 'waiting'
      AND (j.waiting_for <= 1 OR (j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'))
    ORDER BY j.id;
    UPDATE jobs
    SET waiting_for = waiting_for - 1,
        dependents = dependents,  -- a job cancelled here releases its own dependents
        status = CASE WHEN after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                      THEN 'cancelled'
                      WHEN waiting_for <= 1 THEN 'queued' ELSE 'waiting' END,
        finished_at = CASE WHEN after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                           THEN max(coalesce(NEW.finished_at, created_at), created_at) END,
        error = CASE WHEN after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                     THEN 'cancelled: job ' || NEW.id || ' it waited for ended ' || NEW.status
                END,
        run_at = CASE WHEN waiting_for <= 1
                      THEN max(run_at, coalesce(NEW.finished_at, run_at), coalesce((
                          SELECT max(p.finished_at) FROM job_after b JOIN jobs p
                          ON p.id = b.after_id WHERE b.job_id = jobs.id), run_at))
                      ELSE run_at END
    WHERE status = 'waiting'
      AND id IN (SELECT job_id FROM job_after WHERE after_id = NEW.id AND after_status IS NULL);
    UPDATE job_after SET after_status = NEW.status
    WHERE after_id = NEW.id AND after_status IS NULL;
END;
