-- Migration 8 (SQLite): fleet-wide concurrency limits (see the PostgreSQL migration of
-- the same number). jobs.lock_limit: how many jobs of a lock_key may be reserved or
-- running at once (NULL: one); the unique index that allowed one becomes a plain one.

ALTER TABLE jobs ADD COLUMN lock_limit INTEGER;
DROP INDEX IF EXISTS jobs_lock_held;
CREATE INDEX IF NOT EXISTS jobs_lock_held ON jobs (lock_key)
    WHERE lock_key IS NOT NULL AND status IN ('reserved', 'running');

-- Limits per key (a task's `lock`, or its `concurrency`, per `concurrency_key`): a job
-- becomes reserved or running only while fewer jobs of its key are than its lock_limit
-- (one for a lock); otherwise the change is skipped and it stays queued. SQLite has one
-- writer at a time, so the count is exact.
CREATE TRIGGER IF NOT EXISTS jobs_admit_keyed
BEFORE UPDATE OF status ON jobs
WHEN NEW.lock_key IS NOT NULL AND NEW.status IN ('reserved', 'running')
     AND OLD.status NOT IN ('reserved', 'running')
BEGIN
    SELECT RAISE(IGNORE)
    WHERE (SELECT count(*) FROM jobs h
           WHERE h.lock_key = NEW.lock_key AND h.status IN ('reserved', 'running'))
          >= coalesce(NEW.lock_limit, 1);
END;
