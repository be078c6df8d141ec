-- tasktrail schema for PostgreSQL: the complete current version (12).
--
-- Run it with `psql -f schema.sql`, or let `tasktrail migrate` apply the versioned files
-- in migrations/ (the same result; a test compares the two catalogs). Every object lives
-- in the schema named `tasktrail`; `tasktrail schema --schema NAME` prints this file for
-- another schema name. Safe to run more than once.

CREATE SCHEMA IF NOT EXISTS tasktrail;

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
    stopped_at     timestamptz,
    requested_processes integer,                   -- `workers scale`, until applied
    autoscale_min  integer,                        -- it scales itself in this range
    autoscale_max  integer
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
                  CONSTRAINT jobs_status_check CHECK (status IN (
                      'waiting', 'queued', 'reserved', 'running', 'succeeded', 'failed',
                      'cancelled')),
    ref_type      text,
    ref_id        text,
    priority      smallint NOT NULL DEFAULT 0,      -- higher runs first
    args          json NOT NULL DEFAULT '[]',       -- json, not jsonb: kept exactly as sent
    kwargs        json NOT NULL DEFAULT '{}',
    attempts      integer NOT NULL DEFAULT 0,       -- attempts started so far
    max_attempts  integer NOT NULL DEFAULT 1,
    timeout       double precision,                 -- seconds; NULL: no limit
    run_at        timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,                      -- start of the latest attempt
    finished_at   timestamptz,
    worker_id     bigint,                           -- holds it, or held it last (no FK: hot path)
    result        json,
    error         text,
    unique_key    text,                             -- at most one active job per key
    lock_key      text,                             -- at most lock_limit reserved/running per key
    cancel_requested_at timestamptz,                -- a cancel was asked while it ran
    parent_id     bigint,                           -- the job that enqueued it (a follow-up)
    root_id       bigint,                           -- its tree's root; NULL: it is a root
    waiting_for   integer,                          -- `after=`: jobs it still waits for
    after_policy  text CONSTRAINT jobs_after_policy_check
                  CHECK (after_policy IN ('succeeded', 'finished')),
    dependents    integer NOT NULL DEFAULT 0,       -- jobs waiting for it (job_after)
    after_ended_at timestamptz,                     -- `after=`: the latest end of those so far
    lock_limit    integer,                          -- jobs of its lock_key at once; NULL: one
    rate_key      text,                             -- at most rate_limit of the key start
    rate_limit    integer,                          --   within any rate_window seconds
    rate_window   double precision,
    trace_context text                              -- the enqueuer's trace (W3C, as JSON)
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
-- Every index costs each state change of every job (no change of status can be a HOT
-- update), so there are only those the claim, recovery and lookups by ref need.
CREATE INDEX IF NOT EXISTS jobs_ref ON tasktrail.jobs (ref_type, ref_id, id)
    WHERE ref_type IS NOT NULL;
-- Follow-ups only: a tree is read by its root (tasktrail tree) or level by level from a
-- job down (jobs --descendants).
CREATE INDEX IF NOT EXISTS jobs_parent ON tasktrail.jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_root ON tasktrail.jobs (root_id) WHERE root_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_finished ON tasktrail.jobs (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_active ON tasktrail.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('waiting', 'queued', 'reserved', 'running');
CREATE INDEX IF NOT EXISTS jobs_lock_held ON tasktrail.jobs (lock_key)
    WHERE lock_key IS NOT NULL AND status IN ('reserved', 'running');
CREATE INDEX IF NOT EXISTS jobs_lock_queued ON tasktrail.jobs (lock_key)
    WHERE lock_key IS NOT NULL AND status = 'queued';

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
    detail     json,                -- error, traceback, run time, who, why
    child_pid  integer              -- the worker's child process that ran the attempt
);
CREATE INDEX IF NOT EXISTS events_job ON tasktrail.events (job_id, id);

-- Fan-in: one row per (waiting job, job it waits for); after_status is that job's final
-- status once it has ended (NULL while it has not), so each dependency is counted down
-- once (see job_changed).
CREATE TABLE IF NOT EXISTS tasktrail.job_after (
    job_id        bigint NOT NULL,
    after_id      bigint NOT NULL,
    after_status  text,
    PRIMARY KEY (after_id, job_id)
);
CREATE INDEX IF NOT EXISTS job_after_job ON tasktrail.job_after (job_id);

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
    calendar         text,                        -- business days only (JSON), or NULL
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

-- Queues paused or resumed by a person (`tasktrail queues pause`); a queue with no row
-- here is running. No worker claims from a paused queue.
CREATE TABLE IF NOT EXISTS tasktrail.queues (
    name        text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    changed_at  timestamptz NOT NULL,
    changed_by  text NOT NULL
);

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

-- Make just-inserted jobs wait for others (`after=`): p_links is a JSON array of
-- {"job_id", "after_id", "policy"}. Each job becomes `waiting` (its `waiting` event names
-- what it waits for), a job_after row per job it waits for, and each of those counts its
-- dependents; one that has already ended releases them at once (the trigger below).
-- Security definer: a producer, who may only insert jobs, need not update them.
CREATE OR REPLACE FUNCTION tasktrail.wait_for_jobs(p_links json, p_now timestamptz)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT l.after_id INTO missing
    FROM json_to_recordset(p_links) AS l(after_id bigint)
    WHERE NOT EXISTS (SELECT 1 FROM tasktrail.jobs j WHERE j.id = l.after_id)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'after: there is no job %', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    WITH links AS (
        SELECT DISTINCT l.job_id, l.after_id, l.policy
        FROM json_to_recordset(p_links) AS l(job_id bigint, after_id bigint, policy text)
    ), counts AS (
        SELECT l.job_id, count(*) AS n, min(l.policy) AS policy,
               json_agg(l.after_id ORDER BY l.after_id) AS ids
        FROM links l GROUP BY l.job_id
    ), waiting AS (
        UPDATE tasktrail.jobs j
        SET status = 'waiting', waiting_for = c.n, after_policy = c.policy
        FROM counts c
        WHERE j.id = c.job_id AND j.status = 'queued' AND j.attempts = 0
          AND j.waiting_for IS NULL
        RETURNING j.id
    ), events AS (
        INSERT INTO tasktrail.events (job_id, at, kind, attempt, detail)
        SELECT c.job_id, p_now, 'waiting', 0,
               json_build_object('after', c.ids, 'policy', c.policy)
        FROM counts c JOIN waiting w ON w.id = c.job_id
    ), linked AS (
        INSERT INTO tasktrail.job_after (job_id, after_id)
        SELECT l.job_id, l.after_id FROM links l JOIN waiting w ON w.id = l.job_id
        RETURNING after_id
    )
    -- (a job that has ended already fires the trigger now, and releases them at once)
    UPDATE tasktrail.jobs j SET dependents = j.dependents + p.n
    FROM (SELECT after_id, count(*) AS n FROM linked GROUP BY after_id) AS p
    WHERE j.id = p.after_id;
END;
$$;


-- Limits per key (a task's `lock`, or its `concurrency`, per `concurrency_key`): how many
-- jobs of each key are reserved or running now. A job becomes reserved or running only
-- if its key has room (jobs_admit, below; it is left queued otherwise); the row is
-- updated under its lock, so claims in many workers at once count each other exactly.
-- jobs_changed counts down when one leaves, whatever the path (outcome, release,
-- cancel, recovery), and wakes the workers of its queue. `freed_at`: the latest end of
-- a job that held the key; a job admitted after it starts no earlier (a claim's time is
-- taken before it waits for this row, so it can lag behind an end committed meanwhile,
-- and the history would show two holders at once). Rows of keys nobody holds stay (the
-- next claim needs freed_at) until `maintain` deletes those idle for an hour.
CREATE TABLE IF NOT EXISTS tasktrail.job_limits (
    lock_key  text PRIMARY KEY,
    held      integer NOT NULL,
    freed_at  timestamptz
);


-- Rates per key (a task's `rate`, per `rate_key`): the starts of the last window, one row
-- each. A job begins to run only if fewer of its key than its rate_limit started within
-- its rate_window before it (jobs_admit, below: it is left as it was otherwise); claims of one key take turns (a transaction advisory lock), so each
-- sees the starts of the others. Rows a minute older than the window go as new ones come.
CREATE TABLE IF NOT EXISTS tasktrail.job_starts (
    rate_key  text NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS job_starts_key ON tasktrail.job_starts (rate_key, at);

-- Before a job becomes reserved or running: the database's word on its key's room
-- (job_limits, counted under the row's lock) and on its rate's window (job_starts,
-- claims of one key taking turns under an advisory lock); a job refused either is left
-- as it was (queued), as if the claim had not picked it. One trigger for both: each
-- trigger costs every job update its check, keyed or not.
CREATE OR REPLACE FUNCTION tasktrail.admit_job() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    since timestamptz;
    freed timestamptz;
BEGIN
    IF NEW.lock_key IS NOT NULL THEN
        INSERT INTO tasktrail.job_limits AS l (lock_key, held) VALUES (NEW.lock_key, 1)
        ON CONFLICT (lock_key) DO UPDATE SET held = l.held + 1
            WHERE l.held < coalesce(NEW.lock_limit, 1)
        RETURNING l.freed_at INTO freed;
        IF NOT FOUND THEN
            RETURN NULL;  -- its key is full: this row is left as it was (queued)
        END IF;
        IF NEW.status = 'running' THEN  -- not before the last holder's end (job_limits)
            NEW.started_at := greatest(NEW.started_at, freed);
        END IF;
    END IF;
    IF NEW.rate_key IS NOT NULL AND NEW.status = 'running' THEN
        since := NEW.started_at - make_interval(secs => NEW.rate_window);
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

-- Lock the job_limits rows of the given jobs' lock keys, in the keys' order (the
-- exchange calls it first with the jobs its outcomes end): the release of those keys,
-- row by row in the job_changed trigger, then never waits for another exchange
-- releasing the same keys in the other order (a deadlock). The exchange calls it only
-- while some key is in use. Security definer: a worker may read job_limits, not lock
-- its rows.
CREATE OR REPLACE FUNCTION tasktrail.lock_released_keys(p_job_ids bigint[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    locked integer;
BEGIN
    SELECT count(*)::integer INTO locked FROM (
        SELECT l.lock_key FROM tasktrail.job_limits l
        WHERE l.lock_key IN (SELECT j.lock_key FROM tasktrail.jobs j
                             WHERE j.id = ANY (p_job_ids) AND j.lock_key IS NOT NULL)
        ORDER BY l.lock_key
        FOR UPDATE
    ) AS keys;
    RETURN locked;
END;
$$;

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
        UPDATE tasktrail.job_limits
        SET held = held - 1, freed_at = greatest(freed_at, NEW.finished_at)
        WHERE lock_key = OLD.lock_key;
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

-- Every event with its job's task and ref and the worker's name, host and pid: the
-- timeline `tasktrail show` prints.
CREATE OR REPLACE VIEW tasktrail.job_history AS
SELECT e.id, e.job_id, j.task, j.ref_type, j.ref_id, e.at, e.kind, e.attempt,
       w.name AS worker_name, w.host, w.pid, e.detail, e.child_pid, j.parent_id,
       coalesce(j.root_id, j.id) AS root_id
FROM tasktrail.events e
JOIN tasktrail.jobs j ON j.id = e.job_id
LEFT JOIN tasktrail.workers w ON w.id = e.worker_id;

-- The latest job of each task for each business object.
CREATE OR REPLACE VIEW tasktrail.latest_by_ref AS
SELECT DISTINCT ON (ref_type, ref_id, task)
       ref_type, ref_id, task, id AS job_id, status, attempts, created_at, started_at,
       finished_at, finished_at - started_at AS run_time, error, parent_id,
       coalesce(root_id, id) AS root_id
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

INSERT INTO tasktrail.migrations (version, name) VALUES (1, 'initial'), (2, 'flow_control'), (3, 'child_pid'), (4, 'worker_control'), (5, 'lineage'), (6, 'business_calendar'), (7, 'fan_in'), (8, 'concurrency'), (9, 'rate'), (10, 'lock_freed'), (11, 'trace_context'), (12, 'ordered_release')
ON CONFLICT (version) DO NOTHING;
