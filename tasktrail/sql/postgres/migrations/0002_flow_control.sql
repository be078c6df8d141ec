-- Migration 2: unique jobs, per-object locks, cancelling running jobs, schedules and their
-- ledger; job data stored as json, not jsonb, so it comes back exactly as it was sent
-- (floats keep their form, and strings may hold NUL characters).

DROP VIEW IF EXISTS tasktrail.job_history;

ALTER TABLE tasktrail.jobs
    ALTER COLUMN args DROP DEFAULT,
    ALTER COLUMN args TYPE json USING args::json,
    ALTER COLUMN args SET DEFAULT '[]',
    ALTER COLUMN kwargs DROP DEFAULT,
    ALTER COLUMN kwargs TYPE json USING kwargs::json,
    ALTER COLUMN kwargs SET DEFAULT '{}',
    ALTER COLUMN result TYPE json USING result::json,
    ADD COLUMN IF NOT EXISTS unique_key text,
    ADD COLUMN IF NOT EXISTS lock_key text,
    ADD COLUMN IF NOT EXISTS cancel_requested_at timestamptz;
ALTER TABLE tasktrail.events ALTER COLUMN detail TYPE json USING detail::json;

-- Fewer indexes on the hot table: jobs by task are found through jobs_finished and
-- history; the ref index only covers jobs that have a ref.
DROP INDEX IF EXISTS tasktrail.jobs_task;
DROP INDEX IF EXISTS tasktrail.jobs_ref;
CREATE INDEX IF NOT EXISTS jobs_ref ON tasktrail.jobs (ref_type, ref_id, id)
    WHERE ref_type IS NOT NULL;

CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_active ON tasktrail.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('queued', 'reserved', 'running');
CREATE UNIQUE INDEX IF NOT EXISTS jobs_lock_held ON tasktrail.jobs (lock_key)
    WHERE lock_key IS NOT NULL AND status IN ('reserved', 'running');
CREATE INDEX IF NOT EXISTS jobs_lock_queued ON tasktrail.jobs (lock_key)
    WHERE lock_key IS NOT NULL AND status = 'queued';

-- Periodic jobs. Code-declared ones (@app.periodic) are written here by workers at start;
-- run-time ones by app.schedules.add / `tasktrail schedules add`.
CREATE TABLE IF NOT EXISTS tasktrail.schedules (
    name             text PRIMARY KEY,
    task             text NOT NULL,
    cron             text,                        -- five-field cron, UTC
    every_seconds    double precision,            -- or a fixed interval from anchor
    args             json NOT NULL DEFAULT '[]',
    kwargs           json NOT NULL DEFAULT '{}',
    ref_type         text,
    ref_id           text,
    queue            text,
    priority         smallint,
    catch_up         text NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('latest', 'all', 'none')),
    skip_if_running  boolean NOT NULL DEFAULT false,
    source           text NOT NULL DEFAULT 'runtime' CHECK (source IN ('code', 'runtime')),
    paused           boolean NOT NULL DEFAULT false,
    anchor           timestamptz NOT NULL,
    next_due_at      timestamptz NOT NULL,
    last_due_at      timestamptz,
    last_job_id      bigint,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CHECK ((cron IS NULL) <> (every_seconds IS NULL))
);
CREATE INDEX IF NOT EXISTS schedules_due ON tasktrail.schedules (next_due_at) WHERE NOT paused;

-- The ledger: one row per due time of a schedule. Its primary key is what makes a due
-- time fire at most one job, however many workers look at it.
CREATE TABLE IF NOT EXISTS tasktrail.schedule_ticks (
    schedule     text NOT NULL,
    due_at       timestamptz NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('fired', 'skipped', 'missed')),
    job_id       bigint,
    reason       text,
    recorded_at  timestamptz NOT NULL,
    worker_id    bigint,
    PRIMARY KEY (schedule, due_at)
);

-- Take back every job the given workers hold: reserved ones are requeued, running ones
-- get a `lost` event and are retried (attempts left) or failed. Used by lease recovery
-- and by unregistering a worker that could not release its jobs.
CREATE OR REPLACE FUNCTION tasktrail.take_back_jobs(
    p_worker_ids bigint[], p_now timestamptz, p_error_template text
) RETURNS TABLE (job_id bigint, worker_id bigint, was text, became text)
LANGUAGE sql AS $$
    WITH held AS (
        SELECT j.id, j.status, j.attempts, j.max_attempts, j.worker_id
        FROM tasktrail.jobs j
        WHERE j.worker_id = ANY (p_worker_ids) AND j.status IN ('reserved', 'running')
        FOR UPDATE
    ), changed AS (
        UPDATE tasktrail.jobs j
        SET status = CASE WHEN h.status = 'reserved' OR h.attempts < h.max_attempts
                          THEN 'queued' ELSE 'failed' END,
            run_at = CASE WHEN h.status = 'running' AND h.attempts < h.max_attempts
                          THEN p_now ELSE j.run_at END,
            finished_at = CASE WHEN h.status = 'running' AND h.attempts >= h.max_attempts
                               THEN p_now ELSE j.finished_at END,
            error = CASE WHEN h.status = 'running' THEN format(p_error_template, h.worker_id)
                         ELSE j.error END
        FROM held h
        WHERE j.id = h.id
        RETURNING j.id, h.worker_id, h.status AS was, j.status AS became, j.attempts
    ), events AS (
        INSERT INTO tasktrail.events (job_id, at, kind, attempt, worker_id, detail)
        SELECT c.id, p_now, 'lost', c.attempts, c.worker_id,
               json_build_object('was', c.was, 'error', format(p_error_template, c.worker_id))
        FROM changed c
        UNION ALL
        SELECT c.id, p_now, 'retry_scheduled', c.attempts, NULL,
               json_build_object('run_at', p_now)
        FROM changed c
        WHERE c.was = 'running' AND c.became = 'queued'
    )
    SELECT c.id, c.worker_id, c.was, c.became FROM changed c ORDER BY c.id;
$$;

-- The jobs a worker may claim now, best first, locked (FOR UPDATE SKIP LOCKED) for the
-- calling transaction (plpgsql, so its plans are cached per session). It walks the
-- partial claim indexes in order and stops after
-- p_limit rows: the planner settings make sure of that even when the table's statistics
-- are stale (right after a bulk enqueue), when it would otherwise sort every queued job.
-- A locked job waits while its key is held, and behind earlier jobs of its key. With
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
              NOT EXISTS (
                  SELECT 1 FROM tasktrail.jobs h
                  WHERE h.lock_key = j.lock_key AND h.status IN ('reserved', 'running'))
              AND NOT EXISTS (
                  SELECT 1 FROM tasktrail.jobs b
                  WHERE b.lock_key = j.lock_key AND b.status = 'queued' AND b.run_at <= p_now
                    AND ROW(-b.priority, b.run_at, b.id) < ROW(-j.priority, j.run_at, j.id))))
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
              NOT EXISTS (
                  SELECT 1 FROM tasktrail.jobs h
                  WHERE h.lock_key = j.lock_key AND h.status IN ('reserved', 'running'))
              AND NOT EXISTS (
                  SELECT 1 FROM tasktrail.jobs b
                  WHERE b.lock_key = j.lock_key AND b.status = 'queued' AND b.run_at <= p_now
                    AND ROW(-b.priority, b.run_at, b.id) < ROW(-j.priority, j.run_at, j.id))))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ) AS c;
END;
$$;

-- Every event with its job's task and ref and the worker's name, host and pid: the
-- timeline `tasktrail show` prints.
CREATE OR REPLACE VIEW tasktrail.job_history AS
SELECT e.id, e.job_id, j.task, j.ref_type, j.ref_id, e.at, e.kind, e.attempt,
       w.name AS worker_name, w.host, w.pid, e.detail
FROM tasktrail.events e
JOIN tasktrail.jobs j ON j.id = e.job_id
LEFT JOIN tasktrail.workers w ON w.id = e.worker_id;

