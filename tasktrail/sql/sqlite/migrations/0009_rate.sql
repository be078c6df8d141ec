-- Migration 9 (SQLite): fleet-wide rate limits (see the PostgreSQL migration of the same
-- number).

ALTER TABLE jobs ADD COLUMN rate_key TEXT;
ALTER TABLE jobs ADD COLUMN rate_limit INTEGER;
ALTER TABLE jobs ADD COLUMN rate_window REAL;

-- Rates per key (a task's `rate`, per `rate_key`): the starts of the last window (`at`
-- as a Julian day number), one row each; see jobs_admit.
CREATE TABLE IF NOT EXISTS job_starts (
    rate_key  TEXT NOT NULL,
    at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS job_starts_key ON job_starts (rate_key, at);
-- The limit trigger of migration 8 becomes one with the rate's part.
DROP TRIGGER IF EXISTS jobs_admit_keyed;
-- Before a job becomes reserved or running: one trigger for the key's room and the
-- rate's window (each trigger costs every job update its check, keyed or not). A job
-- of a full key, or whose rate is used up, is skipped (RAISE(IGNORE)): it stays queued.
-- SQLite has one writer at a time, so the counts are exact.
-- (It fires for statements that set worker_id, as a claim does: not for an outcome.)
CREATE TRIGGER IF NOT EXISTS jobs_admit
BEFORE UPDATE OF worker_id ON jobs
WHEN (NEW.lock_key IS NOT NULL OR NEW.rate_key IS NOT NULL)
     AND NEW.status IN ('reserved', 'running') AND OLD.status NOT IN ('reserved', 'running')
BEGIN
    SELECT RAISE(IGNORE)
    WHERE NEW.lock_key IS NOT NULL
      AND (SELECT count(*) FROM jobs h
           WHERE h.lock_key = NEW.lock_key AND h.status IN ('reserved', 'running'))
          >= coalesce(NEW.lock_limit, 1);
    -- (starts kept a minute past the window: a worker whose clock or claim lags behind
    -- another's still finds the starts its own window holds)
    DELETE FROM job_starts
    WHERE NEW.rate_key IS NOT NULL AND NEW.status = 'running' AND rate_key = NEW.rate_key
      AND at <= julianday(NEW.started_at) - (NEW.rate_window + 60.0) / 86400.0;
    SELECT RAISE(IGNORE)
    WHERE NEW.rate_key IS NOT NULL AND NEW.status = 'running'
      AND (SELECT count(*) FROM job_starts
           WHERE rate_key = NEW.rate_key
             AND at > julianday(NEW.started_at) - NEW.rate_window / 86400.0) >= NEW.rate_limit;
    INSERT INTO job_starts (rate_key, at)
    SELECT NEW.rate_key, julianday(NEW.started_at)
    WHERE NEW.rate_key IS NOT NULL AND NEW.status = 'running';
END;
