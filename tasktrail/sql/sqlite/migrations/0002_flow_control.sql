-- Migration 2 (SQLite): unique jobs, per-object locks, cancelling running jobs, schedules.

DROP INDEX IF EXISTS jobs_task;
DROP INDEX IF EXISTS jobs_status;
DROP INDEX IF EXISTS jobs_ref;
CREATE INDEX IF NOT EXISTS jobs_ref ON jobs (ref_type, ref_id, id) WHERE ref_type IS NOT NULL;
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
ALTER TABLE jobs ADD COLUMN lock_key TEXT;
ALTER TABLE jobs ADD COLUMN cancel_requested_at TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_active ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('queued', 'reserved', 'running');
CREATE UNIQUE INDEX IF NOT EXISTS jobs_lock_held ON jobs (lock_key)
    WHERE lock_key IS NOT NULL AND status IN ('reserved', 'running');

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
