-- Migration 8: fleet-wide concurrency limits. A task's `concurrency=N` (per
-- `concurrency_key`) lets N jobs of a key be reserved or running at once; a `lock` is the
-- case of one. jobs.lock_limit holds N (NULL: one); the claim reads how full a key is,
-- and a trigger admits a job only while its key has room, counted in job_limits under
-- that row's lock (this replaces the unique index jobs_lock_held, which allowed one).
-- The held jobs' index is rebuilt without uniqueness (a partial index: small).

ALTER TABLE tasktrail.jobs ADD COLUMN IF NOT EXISTS lock_limit integer;

DROP INDEX IF EXISTS tasktrail.jobs_lock_held;
CREATE INDEX jobs_lock_held ON tasktrail.jobs (lock_key)
    WHERE lock_key IS NOT NULL AND status IN ('reserved', 'running');

-- Limits per key (a task's `lock`, or its `concurrency`, per `concurrency_key`): how many
-- jobs of each key are reserved or running now. A job becomes reserved or running only
-- if its key has room (jobs_admit_keyed, before the change; it is left queued
-- otherwise); the row is updated under its lock, so claims in many workers at once
-- count each other exactly. jobs_release_keyed counts down when one leaves, whatever
-- the path (outcome, release, cancel, recovery), and wakes the workers of its queue.
CREATE TABLE IF NOT EXISTS tasktrail.job_limits (
    lock_key  text PRIMARY KEY,
    held      integer NOT NULL
);

CREATE OR REPLACE FUNCTION tasktrail.admit_keyed_job() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO tasktrail.job_limits AS l (lock_key, held) VALUES (NEW.lock_key, 1)
    ON CONFLICT (lock_key) DO UPDATE SET held = l.held + 1
        WHERE l.held < coalesce(NEW.lock_limit, 1);
    IF NOT FOUND THEN
        RETURN NULL;  -- its key is full: this row is left as it was (queued)
    END IF;
    RETURN NEW;
END;
$$;
DROP TRIGGER IF EXISTS jobs_admit_keyed ON tasktrail.jobs;
CREATE TRIGGER jobs_admit_keyed BEFORE UPDATE OF status ON tasktrail.jobs
    FOR EACH ROW
    WHEN (NEW.lock_key IS NOT NULL AND NEW.status IN ('reserved', 'running')
          AND OLD.status NOT IN ('reserved', 'running'))
    EXECUTE FUNCTION tasktrail.admit_keyed_job();

CREATE OR REPLACE FUNCTION tasktrail.release_keyed_job() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    WITH counted AS (
        UPDATE tasktrail.job_limits SET held = held - 1 WHERE lock_key = OLD.lock_key
        RETURNING lock_key, held
    )
    DELETE FROM tasktrail.job_limits l
    USING counted c WHERE l.lock_key = c.lock_key AND c.held <= 0;
    -- a job of its key may be waiting: wake the idle workers of its queue, as an enqueue
    -- does (one notification per queue and transaction)
    PERFORM pg_notify('tasktrail', OLD.queue);
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS jobs_release_keyed ON tasktrail.jobs;
CREATE TRIGGER jobs_release_keyed AFTER UPDATE OF status ON tasktrail.jobs
    FOR EACH ROW
    WHEN (OLD.lock_key IS NOT NULL AND OLD.status IN ('reserved', 'running')
          AND NEW.status NOT IN ('reserved', 'running'))
    EXECUTE FUNCTION tasktrail.release_keyed_job();

INSERT INTO tasktrail.job_limits (lock_key, held)
SELECT lock_key, count(*) FROM tasktrail.jobs
WHERE lock_key IS NOT NULL AND status IN ('reserved', 'running')
GROUP BY lock_key
ON CONFLICT (lock_key) DO NOTHING;

-- The jobs a worker may claim now, best first, locked (FOR UPDATE SKIP LOCKED) for the
-- calling transaction (plpgsql, so its plans are cached per session). It walks the
-- partial claim indexes in order and stops after
-- p_limit rows: the planner settings make sure of that even when the table's statistics
-- are stale (right after a bulk enqueue), when it would otherwise sort every queued job.
-- A job with a lock key waits while its key is full (as many reserved or running as its
-- lock_limit, one for a lock), and behind the earlier jobs of its key that fill the rest. With
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
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) AS c;
END;
$$;
