-- Migration 9 (SQLite): fleet-wide rate limits (see the PostgreSQL migration of the same
-- number).

ALTER TABLE jobs ADD COLUMN rate_key TEXT;
ALTER TABLE jobs ADD COLUMN rate_limit INTEGER;
ALTER TABLE jobs ADD COLUMN rate_window REAL;

-- Rates per key (a task's `rate`, per `rate_key`): the starts of the last window (`at`
-- as a Julian day number), one row each. A job begins to run only while fewer of its key
-- than its rate_limit started within its rate_window before it; otherwise the change is
-- skipped. Rows a minute older than the window go as new ones come.
CREATE TABLE IF NOT EXISTS job_starts (
    rate_key  TEXT NOT NULL,
    at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS job_starts_key ON job_starts (rate_key, at);
CREATE TRIGGER IF NOT EXISTS jobs_admit_by_rate
BEFORE UPDATE OF status ON jobs
WHEN NEW.rate_key IS NOT NULL AND NEW.status = 'running' AND OLD.status <> 'running'
BEGIN
    -- (kept a minute past the window: a worker whose clock or claim lags behind another's
    -- still finds the starts its own window holds)
    DELETE FROM job_starts
    WHERE rate_key = NEW.rate_key
      AND at <= julianday(NEW.started_at) - (NEW.rate_window + 60.0) / 86400.0;
    SELECT RAISE(IGNORE)
    WHERE (SELECT count(*) FROM job_starts
           WHERE rate_key = NEW.rate_key
             AND at > julianday(NEW.started_at) - NEW.rate_window / 86400.0) >= NEW.rate_limit;
    INSERT INTO job_starts (rate_key, at) VALUES (NEW.rate_key, julianday(NEW.started_at));
END;
