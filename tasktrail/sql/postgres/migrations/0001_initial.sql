-- Migration 1: the initial schema. Applied by `tasktrail migrate` to an empty database.
-- (Later migrations change what this one created; schema.sql is always the sum.)
-- (the schema itself is created by `tasktrail migrate` when it is missing)

CREATE TABLE IF NOT EXISTS tasktrail.migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per worker client (supervisor process). A job held by a worker is leased
-- through it: when its expires_at passes without a heartbeat, the worker is lost and
-- its jobs are recovered. A worker with a current lease is never rescued by elapsed
-- time alone, however long its jobs run.
CREATE TABLE IF NOT EXISTS tasktrail.workers (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL,
    host           text NOT NULL,
    pid            integer NOT NULL,
    processes      integer NOT NULL,
    reserve        integer NOT NULL,
    queues         text[] NOT NULL DEFAULT '{}',   -- empty: every queue
    lease_seconds  double precision NOT NULL,
    status         text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'stopped', 'lost')),
    started_at     timestamptz NOT NULL,
    heartbeat_at   timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    stopped_at     timestamptz
);
CREATE INDEX IF NOT EXISTS workers_running_expiry ON tasktrail.workers (expires_at)
    WHERE status = 'running';

-- Jobs. Rows change state a few times each, so the table is tuned for frequent
-- vacuuming: the claim index only covers queued rows and must not bloat.
CREATE TABLE IF NOT EXISTS tasktrail.jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task          text NOT NULL,
    queue         text NOT NULL,
    status        text NOT NULL
                  CHECK (status IN ('queued', 'reserved', 'running', 'succeeded', 'failed', 'cancelled')),
    ref_type      text,
    ref_id        text,
    priority      smallint NOT NULL DEFAULT 0,      -- higher runs first
    args          jsonb NOT NULL DEFAULT '[]',
    kwargs        jsonb NOT NULL DEFAULT '{}',
    attempts      integer NOT NULL DEFAULT 0,       -- attempts started so far
    max_attempts  integer NOT NULL DEFAULT 1,
    timeout       double precision,                 -- seconds; NULL: no limit
    run_at        timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,                      -- start of the latest attempt
    finished_at   timestamptz,
    worker_id     bigint,                           -- holds it, or held it last (no FK: hot path)
    result        jsonb,
    error         text
) WITH (
    fillfactor = 90,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
-- The claim reads only these partial indexes: finished jobs are never scanned.
CREATE INDEX IF NOT EXISTS jobs_claim_by_queue ON tasktrail.jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_claim ON tasktrail.jobs (priority DESC, run_at, id)
    WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_held ON tasktrail.jobs (worker_id)
    WHERE status IN ('reserved', 'running');
CREATE INDEX IF NOT EXISTS jobs_ref ON tasktrail.jobs (ref_type, ref_id, id);
CREATE INDEX IF NOT EXISTS jobs_task ON tasktrail.jobs (task, id);
CREATE INDEX IF NOT EXISTS jobs_finished ON tasktrail.jobs (finished_at)
    WHERE finished_at IS NOT NULL;

-- A job's history, append-only: rows are inserted by the same statements that change the
-- job and never updated. No foreign key, so it can be partitioned by `at` and pruned
-- independently.
CREATE TABLE IF NOT EXISTS tasktrail.events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     bigint NOT NULL,
    at         timestamptz NOT NULL,
    kind       text NOT NULL,
    attempt    integer NOT NULL,    -- attempts started when the event happened
    worker_id  bigint,              -- the worker that caused it, if any
    detail     jsonb                -- error, traceback, run time, who, why
);
CREATE INDEX IF NOT EXISTS events_job ON tasktrail.events (job_id, id);

-- Wake idle workers (LISTEN tasktrail) when jobs are inserted, whoever inserts them.
CREATE OR REPLACE FUNCTION tasktrail.notify_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tasktrail', q.queue) FROM (SELECT DISTINCT queue FROM new_jobs) AS q;
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS jobs_notify ON tasktrail.jobs;
CREATE TRIGGER jobs_notify AFTER INSERT ON tasktrail.jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tasktrail.notify_jobs();

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
               jsonb_build_object('was', c.was, 'error', format(p_error_template, c.worker_id))
        FROM changed c
        UNION ALL
        SELECT c.id, p_now, 'retry_scheduled', c.attempts, NULL,
               jsonb_build_object('run_at', p_now)
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

-- The latest job of each task for each business object.
CREATE OR REPLACE VIEW tasktrail.latest_by_ref AS
SELECT DISTINCT ON (ref_type, ref_id, task)
       ref_type, ref_id, task, id AS job_id, status, attempts, created_at, started_at,
       finished_at, finished_at - started_at AS run_time, error
FROM tasktrail.jobs
WHERE ref_type IS NOT NULL
ORDER BY ref_type, ref_id, task, id DESC;

-- Per task and hour: jobs finished by final status, and run time percentiles (seconds).
CREATE OR REPLACE VIEW tasktrail.task_hourly AS
SELECT task,
       date_trunc('hour', finished_at) AS hour,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           AS run_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           AS run_p95,
       avg(extract(epoch FROM started_at - run_at)) AS wait_avg
FROM tasktrail.jobs
WHERE finished_at IS NOT NULL
GROUP BY task, date_trunc('hour', finished_at);

