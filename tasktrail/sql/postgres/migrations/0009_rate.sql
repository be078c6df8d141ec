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
-- its rate_window before it (jobs_admit, below: it is left as it was otherwise); claims of one key take turns (a transaction advisory lock), so each
-- sees the starts of the others. Rows a minute older than the window go as new ones come.
CREATE TABLE IF NOT EXISTS tasktrail.job_starts (
    rate_key  text NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS job_starts_key ON tasktrail.job_starts (rate_key, at);

-- The triggers of migrations 7 and 8 become two, jobs_admit (before) and jobs_changed
-- (after), which also do the rate's part: each trigger costs every job update its check.
DROP TRIGGER IF EXISTS jobs_release_dependents ON tasktrail.jobs;
DROP TRIGGER IF EXISTS jobs_admit_keyed ON tasktrail.jobs;
DROP TRIGGER IF EXISTS jobs_release_keyed ON tasktrail.jobs;
DROP FUNCTION IF EXISTS tasktrail.release_dependents();
DROP FUNCTION IF EXISTS tasktrail.admit_keyed_job();
DROP FUNCTION IF EXISTS tasktrail.release_keyed_job();

-- Before a job becomes reserved or running: the database's word on its key's room
-- (job_limits, counted under the row's lock) and on its rate's window (job_starts,
-- claims of one key taking turns under an advisory lock); a job refused either is left
-- as it was (queued), as if the claim had not picked it. One trigger for both: each
-- trigger costs every job update its check, keyed or not.
CREATE OR REPLACE FUNCTION tasktrail.admit_job() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    since timestamptz := NEW.started_at - make_interval(secs => NEW.rate_window);
BEGIN
    IF NEW.lock_key IS NOT NULL THEN
        INSERT INTO tasktrail.job_limits AS l (lock_key, held) VALUES (NEW.lock_key, 1)
        ON CONFLICT (lock_key) DO UPDATE SET held = l.held + 1
            WHERE l.held < coalesce(NEW.lock_limit, 1);
        IF NOT FOUND THEN
            RETURN NULL;  -- its key is full: this row is left as it was (queued)
        END IF;
    END IF;
    IF NEW.rate_key IS NOT NULL AND NEW.status = 'running' THEN
        PERFORM pg_advisory_xact_lock(
            hashtextextended(TG_TABLE_SCHEMA || ' job_starts ' || NEW.rate_key, 0));
        -- (kept a minute past the window: a worker whose clock or claim lags behind another's
        -- still finds the starts its own window holds)
        DELETE FROM tasktrail.job_starts
        WHERE rate_key = NEW.rate_key AND at <= since - interval '60 seconds';
        IF (SELECT count(*) FROM tasktrail.job_starts WHERE rate_key = NEW.rate_key AND at > since)
                >= NEW.rate_limit THEN
            IF NEW.lock_key IS NOT NULL THEN  -- give back the place just counted for its key
                UPDATE tasktrail.job_limits SET held = held - 1 WHERE lock_key = NEW.lock_key;
            END IF;
            RETURN NULL;  -- its rate is used up for now: this row is left as it was
        END IF;
        INSERT INTO tasktrail.job_starts (rate_key, at) VALUES (NEW.rate_key, NEW.started_at);
    END IF;
    RETURN NEW;
END;
$$;
DROP TRIGGER IF EXISTS jobs_admit ON tasktrail.jobs;
-- (declared for statements that set worker_id, as a claim does: not for an outcome)
CREATE TRIGGER jobs_admit BEFORE UPDATE OF worker_id ON tasktrail.jobs
    FOR EACH ROW
    WHEN ((NEW.lock_key IS NOT NULL OR NEW.rate_key IS NOT NULL)
          AND NEW.status IN ('reserved', 'running') AND OLD.status NOT IN ('reserved', 'running'))
    EXECUTE FUNCTION tasktrail.admit_job();

-- After a job changed: one that leaves reserved or running counts its key down (and
-- wakes the workers of its queue: a job of the key may be waiting); one that has ended
-- (now, or before a job waiting for it was enqueued) counts down the jobs waiting for
-- it: one whose last dependency this was is queued (`ready`, in line from then on, as
-- of the last end among those it waited for), one whose policy asks for success is
-- cancelled at once if this job did not succeed (`cancelled`, naming it), which in turn
-- releases its own dependents.
CREATE OR REPLACE FUNCTION tasktrail.job_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    woken integer;
BEGIN
    IF OLD.lock_key IS NOT NULL AND OLD.status IN ('reserved', 'running')
       AND NEW.status NOT IN ('reserved', 'running') THEN
        WITH counted AS (
            UPDATE tasktrail.job_limits SET held = held - 1 WHERE lock_key = OLD.lock_key
            RETURNING lock_key, held
        )
        DELETE FROM tasktrail.job_limits l
        USING counted c WHERE l.lock_key = c.lock_key AND c.held <= 0;
        -- a job of its key may be waiting: wake the idle workers of its queue, as an enqueue
        -- does (one notification per queue and transaction)
        PERFORM pg_notify('tasktrail', OLD.queue);
    END IF;
    IF NEW.dependents > 0 AND NEW.status IN ('succeeded', 'failed', 'cancelled')
       AND (OLD.status NOT IN ('succeeded', 'failed', 'cancelled')
            OR NEW.dependents <> OLD.dependents) THEN
        WITH resolved AS (
            UPDATE tasktrail.job_after a SET after_status = NEW.status
            WHERE a.after_id = NEW.id AND a.after_status IS NULL
            RETURNING a.job_id
        ), changed AS (
            UPDATE tasktrail.jobs j
            SET waiting_for = j.waiting_for - 1,
                status = CASE WHEN j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                              THEN 'cancelled'
                              WHEN j.waiting_for <= 1 THEN 'queued' ELSE 'waiting' END,
                finished_at = CASE WHEN j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                                   THEN greatest(NEW.finished_at, j.created_at) END,
                error = CASE WHEN j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                             THEN format('cancelled: job %s it waited for ended %s', NEW.id,
                                         NEW.status) END,
                -- the latest end so far, kept on the waiting job's row: updated under its
                -- lock, so ends written at once in two transactions both count (a query
                -- of the jobs waited for would not see the other's yet)
                after_ended_at = greatest(j.after_ended_at, NEW.finished_at),
                run_at = CASE WHEN j.waiting_for <= 1 AND (j.after_policy = 'finished'
                                                           OR NEW.status = 'succeeded')
                              THEN greatest(j.run_at, NEW.finished_at, j.after_ended_at)
                              ELSE j.run_at END
            FROM resolved r
            WHERE j.id = r.job_id AND j.status = 'waiting'
            -- released: when the last of them ended, which is not always the one whose
            -- outcome came last (outcomes are written in batches, after the fact)
            RETURNING j.id, j.status, j.queue,
                      CASE WHEN j.status = 'queued'
                           THEN greatest(j.after_ended_at, j.created_at)
                           ELSE greatest(NEW.finished_at, j.created_at) END AS at
        ), events AS (
            INSERT INTO tasktrail.events (job_id, at, kind, attempt, detail)
            SELECT c.id, c.at, CASE WHEN c.status = 'queued' THEN 'ready' ELSE 'cancelled' END, 0,
                   CASE WHEN c.status = 'queued'
                        THEN json_build_object('after', NEW.id, 'after_status', NEW.status)
                        ELSE json_build_object(
                            'after', NEW.id, 'after_status', NEW.status,
                            'reason', format('job %s it waited for ended %s', NEW.id, NEW.status))
                   END
            FROM changed c WHERE c.status <> 'waiting'
            ORDER BY c.id
        )
        SELECT count(pg_notify('tasktrail', q.queue)) INTO woken
        FROM (SELECT DISTINCT queue FROM changed WHERE status = 'queued') AS q;
    END IF;
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS jobs_changed ON tasktrail.jobs;
CREATE TRIGGER jobs_changed AFTER UPDATE OF status, dependents ON tasktrail.jobs
    FOR EACH ROW
    WHEN ((OLD.lock_key IS NOT NULL AND OLD.status IN ('reserved', 'running')
           AND NEW.status NOT IN ('reserved', 'running'))
          OR (NEW.dependents > 0 AND NEW.status IN ('succeeded', 'failed', 'cancelled')
              AND (OLD.status NOT IN ('succeeded', 'failed', 'cancelled')
                   OR NEW.dependents <> OLD.dependents)))
    EXECUTE FUNCTION tasktrail.job_changed();

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
