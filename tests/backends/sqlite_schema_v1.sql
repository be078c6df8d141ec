-- tasktrail schema for SQLite, version 1, as released (a test fixture: the database an
-- upgrade starts from; see test_sqlite_schema.py). Do not edit.
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
    stopped_at    TEXT
);
CREATE INDEX IF NOT EXISTS workers_running_expiry ON workers (expires_at) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused, even after pruning
    task          TEXT NOT NULL,
    queue         TEXT NOT NULL,
    status        TEXT NOT NULL
                  CHECK (status IN ('queued', 'reserved', 'running', 'succeeded', 'failed', 'cancelled')),
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
    error         TEXT
);
-- The claim reads only this partial index: finished jobs are never scanned.
CREATE INDEX IF NOT EXISTS jobs_claim_by_queue ON jobs (queue, priority DESC, run_at, id)
    WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (priority DESC, run_at, id)
    WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_held ON jobs (worker_id) WHERE status IN ('reserved', 'running');
CREATE INDEX IF NOT EXISTS jobs_ref ON jobs (ref_type, ref_id, id);
CREATE INDEX IF NOT EXISTS jobs_task ON jobs (task, id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, id);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- A job's history, append-only. No foreign key: events are written in the same
-- transaction as the job change, and retention deletes both together.
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     INTEGER NOT NULL,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    attempt    INTEGER NOT NULL,   -- attempts started when the event happened
    worker_id  INTEGER,            -- the worker that caused it, if any
    detail     TEXT                -- JSON object: error, traceback, run time, who, why
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, id);

-- Every event with the worker's name, host and pid: the timeline `tasktrail show` prints.
CREATE VIEW IF NOT EXISTS job_history AS
SELECT e.id, e.job_id, j.task, j.ref_type, j.ref_id, e.at, e.kind, e.attempt,
       w.name AS worker_name, w.host, w.pid, e.detail
FROM events e
JOIN jobs j ON j.id = e.job_id
LEFT JOIN workers w ON w.id = e.worker_id;

INSERT OR IGNORE INTO migrations (version, name, applied_at)
VALUES (1, 'initial', strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));
