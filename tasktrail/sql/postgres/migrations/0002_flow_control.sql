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

-- Every event with its job's task and ref and the worker's name, host and pid: the
-- timeline `tasktrail show` prints.
CREATE OR REPLACE VIEW tasktrail.job_history AS
SELECT e.id, e.job_id, j.task, j.ref_type, j.ref_id, e.at, e.kind, e.attempt,
       w.name AS worker_name, w.host, w.pid, e.detail
FROM tasktrail.events e
JOIN tasktrail.jobs j ON j.id = e.job_id
LEFT JOIN tasktrail.workers w ON w.id = e.worker_id;

