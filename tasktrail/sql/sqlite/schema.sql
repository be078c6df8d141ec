-- tasktrail schema for SQLite: the complete current version (11).
-- A database made by an older version is brought here by the files in migrations/.
--
-- The embedded default: one file on one host, shared by every worker and producer on it.
-- The worker opens it in WAL mode; writers take the lock with BEGIN IMMEDIATE, so a job
-- is claimed by exactly one worker. Times are UTC ISO 8601 text with microseconds
-- ('2026-11-28T09:30:00.000000+00:00'), which sorts in time order.
-- Safe to run more than once.

CREATE TABLE IF NOT EXISTS migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  TEXT NOT NULL
);

-- One row per worker client (supervisor process). Its jobs are leased through it:
-- a worker whose expires_at has passed is lost, and its jobs are recovered.
CREATE TABLE IF NOT EXISTS workers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    processes     INTEGER NOT NULL,
    reserve       INTEGER NOT NULL,
    queues        TEXT NOT NULL,                 -- JSON array; [] means every queue
    lease_seconds REAL NOT NULL,
    status        TEXT NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'stopped', 'lost')),
    started_at    TEXT NOT NULL,
    heartbeat_at  TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    stopped_at    TEXT,
    requested_processes INTEGER,                  -- `workers scale`, until applied
    autoscale_min INTEGER,                        -- it scales itself in this range
    autoscale_max INTEGER
);
CREATE INDEX IF NOT EXISTS workers_running_expiry ON workers (expires_at) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused, even after pruning
    task          TEXT NOT NULL,
    queue         TEXT NOT NULL,
    status        TEXT NOT NULL
                  CHECK (status IN ('waiting', 'queued', 'reserved', 'running', 'succeeded',
                                    'failed', 'cancelled')),
    ref_type      TEXT,
    ref_id        TEXT,
    priority      INTEGER NOT NULL DEFAULT 0,      -- higher runs first
    args          TEXT NOT NULL DEFAULT '[]',      -- JSON array
    kwargs        TEXT NOT NULL DEFAULT '{}',      -- JSON object
    attempts      INTEGER NOT NULL DEFAULT 0,      -- attempts started so far
    max_attempts  INTEGER NOT NULL DEFAULT 1,
    timeout       REAL,                            -- seconds; NULL: no limit
    run_at        TEXT NOT NULL,                   -- not before this time
    created_at    TEXT NOT NULL,
    started_at    TEXT,                            -- start of the latest attempt
    finished_at   TEXT,
    worker_id     INTEGER REFERENCES workers (id), -- the worker that holds it, or held it last
    result        TEXT,                            -- JSON
    error         TEXT,
    unique_key    TEXT,                            -- at most one active job per key
    lock_key      TEXT,                            -- at most lock_limit reserved/running per key
    cancel_requested_at TEXT,                      -- a cancel was asked while it ran
    parent_id     INTEGER,                         -- the job that enqueued it (a follow-up)
    root_id       INTEGER,                         -- its tree's root; NULL: it is a root
    waiting_for   INTEGER,                         -- `after=`: jobs it still waits for
    after_policy  TEXT CHECK (after_policy IN ('succeeded', 'finished')),
    dependents    INTEGER NOT NULL DEFAULT 0,      -- jobs waiting for it (job_after)
    lock_limit    INTEGER,                         -- jobs of its lock_key at once; NULL: one
    rate_key      TEXT,                            -- at most rate_limit of the key start
    rate_limit    INTEGER,                         --   within any rate_window seconds
    rate_window   REAL,
    trace_context TEXT                             -- the enqueuer's trace (W3C, as JSON)
);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_root ON jobs (root_id) WHERE root_id IS NOT NULL;
-- The claim reads only this partial index: finished jobs are never scanned.
CREATE INDEX IF NOT EXISTS jobs_claim_by_queue ON jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (priority DESC, run_at, id)
    WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_held ON jobs (worker_id) WHERE status IN ('reserved', 'running');
CREATE INDEX IF NOT EXISTS jobs_ref ON jobs (ref_type, ref_id, id) WHERE ref_type IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_active ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('waiting', 'queued', 'reserved', 'running');
CREATE INDEX IF NOT EXISTS jobs_lock_held ON jobs (lock_key)
    WHERE lock_key IS NOT NULL AND status IN ('reserved', 'running');
-- the last end of a key's jobs, for the claim that starts the next (claim_start)
CREATE INDEX IF NOT EXISTS jobs_lock_ended ON jobs (lock_key, finished_at)
    WHERE lock_key IS NOT NULL;

-- A job's history, append-only. No foreign key: events are written in the same
-- transaction as the job change, and retention deletes both together.
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     INTEGER NOT NULL,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    attempt    INTEGER NOT NULL,   -- attempts started when the event happened
    worker_id  INTEGER,            -- the worker that caused it, if any
    detail     TEXT,               -- JSON object: error, traceback, run time, who, why
    child_pid  INTEGER             -- the worker's child process that ran the attempt
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, id);

-- Fan-in: one row per (waiting job, job it waits for); after_status is that job's final
-- status once it has ended (NULL while it has not), so each dependency is counted down
-- once (see the trigger jobs_release_dependents).
CREATE TABLE IF NOT EXISTS job_after (
    job_id        INTEGER NOT NULL,
    after_id      INTEGER NOT NULL,
    after_status  TEXT,
    PRIMARY KEY (after_id, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_after_job ON job_after (job_id);

-- A job that has ended (now, or before a job waiting for it was enqueued: its dependents
-- count went up) counts down the jobs waiting for it: one whose last dependency this was
-- is queued (`ready`, in line from then on), one whose policy asks for success is
-- cancelled at once if this job did not succeed (`cancelled`, naming it), which in turn
-- releases its own dependents (the backend's connections set recursive_triggers).
-- It fires for statements that name `dependents` in their SET: each one that ends a job
-- does (`dependents = dependents`), and so does the enqueue of a job waiting for one; an
-- outcome, the hot path, ends its jobs first and then names dependents of those that
-- have any (the statement touch_dependents). So a claim or an outcome of a job nobody
-- waits for runs none of it: in SQLite a trigger's condition is evaluated inside the
-- trigger, at a cost per row of every statement it is declared for. Firing twice is
-- harmless: a dependency is counted down only while its after_status is NULL.
CREATE TRIGGER IF NOT EXISTS jobs_release_dependents
AFTER UPDATE OF dependents ON jobs
WHEN NEW.dependents > 0 AND NEW.status IN ('succeeded', 'failed', 'cancelled')
BEGIN
    INSERT INTO events (job_id, at, kind, attempt, detail)
    SELECT j.id,
           -- released: when the last of them ended, which is not always the one whose
           -- outcome came last (outcomes are written in batches, after the fact)
           CASE WHEN j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                THEN max(coalesce(NEW.finished_at, j.created_at), j.created_at)
                ELSE max(coalesce(NEW.finished_at, j.created_at), j.created_at, coalesce((
                    SELECT max(p.finished_at) FROM job_after b JOIN jobs p ON p.id = b.after_id
                    WHERE b.job_id = j.id), j.created_at)) END,
           CASE WHEN j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                THEN 'cancelled' ELSE 'ready' END,
           0,
           CASE WHEN j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                THEN json_object('after', NEW.id, 'after_status', NEW.status,
                                 'reason', 'job ' || NEW.id || ' it waited for ended '
                                           || NEW.status)
                ELSE json_object('after', NEW.id, 'after_status', NEW.status) END
    FROM job_after a JOIN jobs j ON j.id = a.job_id
    WHERE a.after_id = NEW.id AND a.after_status IS NULL AND j.status = 'waiting'
      AND (j.waiting_for <= 1 OR (j.after_policy = 'succeeded' AND NEW.status <> 'succeeded'))
    ORDER BY j.id;
    UPDATE jobs
    SET waiting_for = waiting_for - 1,
        dependents = dependents,  -- a job cancelled here releases its own dependents
        status = CASE WHEN after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                      THEN 'cancelled'
                      WHEN waiting_for <= 1 THEN 'queued' ELSE 'waiting' END,
        finished_at = CASE WHEN after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                           THEN max(coalesce(NEW.finished_at, created_at), created_at) END,
        error = CASE WHEN after_policy = 'succeeded' AND NEW.status <> 'succeeded'
                     THEN 'cancelled: job ' || NEW.id || ' it waited for ended ' || NEW.status
                END,
        run_at = CASE WHEN waiting_for <= 1
                      THEN max(run_at, coalesce(NEW.finished_at, run_at), coalesce((
                          SELECT max(p.finished_at) FROM job_after b JOIN jobs p
                          ON p.id = b.after_id WHERE b.job_id = jobs.id), run_at))
                      ELSE run_at END
    WHERE status = 'waiting'
      AND id IN (SELECT job_id FROM job_after WHERE after_id = NEW.id AND after_status IS NULL);
    UPDATE job_after SET after_status = NEW.status
    WHERE after_id = NEW.id AND after_status IS NULL;
END;

-- Rates per key (a task's `rate`, per `rate_key`): the starts of the last window, one
-- row each, written by the claim that starts a job (jobs.py). `at` is in seconds since
-- the Unix epoch, as the history's timestamps are to the microsecond (julianday() would
-- round to the millisecond: a start 0.9996 s after another would fall out of its second).
CREATE TABLE IF NOT EXISTS job_starts (
    rate_key  TEXT NOT NULL,
    at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS job_starts_key ON job_starts (rate_key, at);

-- Every event with the worker's name, host and pid: the timeline `tasktrail show` prints.
CREATE VIEW IF NOT EXISTS job_history AS
SELECT e.id, e.job_id, j.task, j.ref_type, j.ref_id, e.at, e.kind, e.attempt,
       w.name AS worker_name, w.host, w.pid, e.detail, e.child_pid, j.parent_id,
       coalesce(j.root_id, j.id) AS root_id
FROM events e
JOIN jobs j ON j.id = e.job_id
LEFT JOIN workers w ON w.id = e.worker_id;

-- Periodic jobs. Code-declared ones (@app.periodic) are written here by workers at start;
-- run-time ones by app.schedules.add / `tasktrail schedules add`.
CREATE TABLE IF NOT EXISTS schedules (
    name             TEXT PRIMARY KEY,
    task             TEXT NOT NULL,
    cron             TEXT,                      -- five-field cron, UTC
    every_seconds    REAL,                      -- or a fixed interval from anchor
    args             TEXT NOT NULL DEFAULT '[]',
    kwargs           TEXT NOT NULL DEFAULT '{}',
    ref_type         TEXT,
    ref_id           TEXT,
    queue            TEXT,
    priority         INTEGER,
    catch_up         TEXT NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('latest', 'all', 'none')),
    skip_if_running  INTEGER NOT NULL DEFAULT 0,
    source           TEXT NOT NULL DEFAULT 'runtime' CHECK (source IN ('code', 'runtime')),
    paused           INTEGER NOT NULL DEFAULT 0,
    anchor           TEXT NOT NULL,
    next_due_at      TEXT NOT NULL,
    last_due_at      TEXT,
    last_job_id      INTEGER,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    calendar         TEXT,                        -- business days only (JSON), or NULL
    CHECK ((cron IS NULL) <> (every_seconds IS NULL))
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_due_at) WHERE paused = 0;

-- The ledger: one row per due time of a schedule. Its primary key is what makes a due
-- time fire at most one job, however many workers look at it.
CREATE TABLE IF NOT EXISTS schedule_ticks (
    schedule     TEXT NOT NULL,
    due_at       TEXT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('fired', 'skipped', 'missed')),
    job_id       INTEGER,
    reason       TEXT,
    recorded_at  TEXT NOT NULL,
    worker_id    INTEGER,
    PRIMARY KEY (schedule, due_at)
);

-- Queues paused or resumed by a person (`tasktrail queues pause`); a queue with no row
-- here is running. No worker claims from a paused queue.
CREATE TABLE IF NOT EXISTS queues (
    name        TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    changed_at  TEXT NOT NULL,
    changed_by  TEXT NOT NULL
);

INSERT OR IGNORE INTO migrations (version, name, applied_at)
VALUES (1, 'initial', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
       (2, 'flow_control', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
       (3, 'child_pid', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
       (4, 'worker_control', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
       (5, 'lineage', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
       (6, 'business_calendar', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
       (7, 'fan_in', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
       (8, 'concurrency', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
       (9, 'rate', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
       (10, 'lean_triggers', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
       (11, 'trace_context', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
