-- Migration 9: fleet-wide rate limits. A task's `rate="10/s"` (per `rate_key`) lets at
-- most so many of its jobs start within any window of that length, across every worker:
-- jobs.rate_key, rate_limit and rate_window, written at enqueue; the starts of the last
-- window in job_starts; the claim reads them, and a trigger admits a start only while
-- the key's rate has room. Nullable columns and a new table: no rewrite.

ALTER TABLE tasktrail.jobs
    ADD COLUMN IF NOT EXISTS rate_key text,
    ADD COLUMN IF NOT EXISTS rate_limit integer,
    ADD COLUMN IF NOT EXISTS rate_window double precision;

-- Rates per key (a task's `rate`, per `rate_key`): the starts of the last window, one row
-- each. A job begins to run only if fewer of its key than its rate_limit started within
-- its rate_window before it (jobs_admit_by_rate, before the change: it is left as it
-- was otherwise); claims of one key take turns (a transaction advisory lock), so each
-- sees the starts of the others. Rows a minute older than the window go as new ones come.
CREATE TABLE IF NOT EXISTS tasktrail.job_starts (
    rate_key  text NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS job_starts_key ON tasktrail.job_starts (rate_key, at);

CREATE OR REPLACE FUNCTION tasktrail.admit_rated_job() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    since timestamptz := NEW.started_at - make_interval(secs => NEW.rate_window);
BEGIN
    PERFORM pg_advisory_xact_lock(
        hashtextextended(TG_TABLE_SCHEMA || ' job_starts ' || NEW.rate_key, 0));
    -- (kept a minute past the window: a worker whose clock or claim lags behind another's
    -- still finds the starts its own window holds)
    DELETE FROM tasktrail.job_starts
    WHERE rate_key = NEW.rate_key AND at <= since - interval '60 seconds';
    IF (SELECT count(*) FROM tasktrail.job_starts WHERE rate_key = NEW.rate_key AND at > since)
            >= NEW.rate_limit THEN
        RETURN NULL;  -- its rate is used up for now: this row is left as it was
    END IF;
    INSERT INTO tasktrail.job_starts (rate_key, at) VALUES (NEW.rate_key, NEW.started_at);
    RETURN NEW;
END;
$$;
-- (named to fire before jobs_admit_keyed, which counts a job in job_limits once admitted)
DROP TRIGGER IF EXISTS jobs_admit_by_rate ON tasktrail.jobs;
CREATE TRIGGER jobs_admit_by_rate BEFORE UPDATE OF status ON tasktrail.jobs
    FOR EACH ROW
    WHEN (NEW.rate_key IS NOT NULL AND NEW.status = 'running' AND OLD.status <> 'running')
    EXECUTE FUNCTION tasktrail.admit_rated_job();

-- The jobs a worker may claim now, best first, locked (FOR UPDATE SKIP LOCKED) for the
-- calling transaction (plpgsql, so its plans are cached per session). It walks the
-- partial claim indexes in order and stops after
-- p_limit rows: the planner settings make sure of that even when the table's statistics
-- are stale (right after a bulk enqueue), when it would otherwise sort every queued job.
-- A job with a lock key waits while its key is full (as many reserved or running as its
-- lock_limit, one for a lock), and behind the earlier jobs of its key that fill the rest; a
-- job with a rate key while as many of its key have started within its window. With
-- p_queues, each queue is read through its own index, so a worker never reads through
-- the backlog of a queue it does not serve.
CREATE OR REPLACE FUNCTION tasktrail.claimable_jobs(
    p_now timestamptz, p_limit integer, p_queues text[]
) RETURNS TABLE (id bigint, priority smallint, run_at timestamptz)
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
BEGIN
    RETURN QUERY
    SELECT c.id, c.priority, c.run_at FROM (
        SELECT j.id, j.priority, j.run_at FROM tasktrail.jobs j
        WHERE p_queues IS NULL AND j.status = 'queued' AND j.run_at <= p_now
          AND (j.lock_key IS NULL OR (
              (SELECT count(*) FROM (
                  SELECT 1 FROM tasktrail.jobs h
                  WHERE h.lock_key = j.lock_key AND h.status IN ('reserved', 'running')
                  LIMIT coalesce(j.lock_limit, 1)) AS held)
              + (SELECT count(*) FROM (
                  SELECT 1 FROM tasktrail.jobs b
                  WHERE b.lock_key = j.lock_key AND b.status = 'queued' AND b.run_at <= p_now
                    AND ROW(-b.priority, b.run_at, b.id) < ROW(-j.priority, j.run_at, j.id)
                  LIMIT coalesce(j.lock_limit, 1)) AS ahead)
              < coalesce(j.lock_limit, 1)))
          AND (j.rate_key IS NULL OR (
              SELECT count(*) FROM (
                  SELECT 1 FROM tasktrail.job_starts s
                  WHERE s.rate_key = j.rate_key
                    AND s.at > p_now - make_interval(secs => j.rate_window)
                  LIMIT j.rate_limit) AS started) < j.rate_limit)
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) AS c
    UNION ALL
    SELECT c.id, c.priority, c.run_at
    FROM (SELECT DISTINCT name FROM unnest(p_queues) AS n (name)) AS q
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM tasktrail.jobs j
        WHERE j.queue = q.name AND j.status = 'queued' AND j.run_at <= p_now
          AND (j.lock_key IS NULL OR (
              (SELECT count(*) FROM (
                  SELECT 1 FROM tasktrail.jobs h
                  WHERE h.lock_key = j.lock_key AND h.status IN ('reserved', 'running')
                  LIMIT coalesce(j.lock_limit, 1)) AS held)
              + (SELECT count(*) FROM (
                  SELECT 1 FROM tasktrail.jobs b
                  WHERE b.lock_key = j.lock_key AND b.status = 'queued' AND b.run_at <= p_now
                    AND ROW(-b.priority, b.run_at, b.id) < ROW(-j.priority, j.run_at, j.id)
                  LIMIT coalesce(j.lock_limit, 1)) AS ahead)
              < coalesce(j.lock_limit, 1)))
          AND (j.rate_key IS NULL OR (
              SELECT count(*) FROM (
                  SELECT 1 FROM tasktrail.job_starts s
                  WHERE s.rate_key = j.rate_key
                    AND s.at > p_now - make_interval(secs => j.rate_window)
                  LIMIT j.rate_limit) AS started) < j.rate_limit)
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) AS c;
END;
$$;
