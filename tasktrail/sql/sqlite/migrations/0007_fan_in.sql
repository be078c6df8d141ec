-- Migration 7 (SQLite): fan-in (see the PostgreSQL migration of the same number). The
-- status check gains `waiting`, which SQLite can only do by building the jobs table
-- anew: copied row by row, under the write lock (seconds per million jobs), with its
-- indexes and the view over it made again. Job ids keep counting from where they were.

DROP VIEW IF EXISTS job_history;

CREATE TABLE jobs_new (
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
    lock_key      TEXT,                            -- at most one reserved/running job per key
    cancel_requested_at TEXT,                      -- a cancel was asked while it ran
    parent_id     INTEGER,                         -- the job that enqueued it (a follow-up)
    root_id       INTEGER,                         -- its tree's root; NULL: it is a root
    waiting_for   INTEGER,                         -- `after=`: jobs it still waits for
    after_policy  TEXT CHECK (after_policy IN ('succeeded', 'finished')),
    dependents    INTEGER NOT NULL DEFAULT 0       -- jobs waiting for it (job_after)
);

INSERT INTO jobs_new (id, task, queue, status, ref_type, ref_id, priority, args, kwargs, attempts,
    max_attempts, timeout, run_at, created_at, started_at, finished_at, worker_id, result,
    error, unique_key, lock_key, cancel_requested_at, parent_id, root_id)
SELECT id, task, queue, status, ref_type, ref_id, priority, args, kwargs, attempts,
    max_attempts, timeout, run_at, created_at, started_at, finished_at, worker_id, result,
    error, unique_key, lock_key, cancel_requested_at, parent_id, root_id
FROM jobs;

-- the AUTOINCREMENT counter: ids of pruned jobs are never handed out again
DELETE FROM sqlite_sequence WHERE name = 'jobs_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'jobs_new', max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0),
                       coalesce((SELECT max(id) FROM jobs_new), 0));

DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

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
CREATE UNIQUE INDEX IF NOT EXISTS jobs_lock_held ON jobs (lock_key)
    WHERE lock_key IS NOT NULL AND status IN ('reserved', 'running');

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
-- (It fires for statements that set finished_at, as every one that ends a job does, or
-- dependents: not for a claim. In SQLite a trigger's condition is checked inside the
-- trigger, at a cost per row of every statement it is declared for.)
CREATE TRIGGER IF NOT EXISTS jobs_release_dependents
AFTER UPDATE OF finished_at, dependents ON jobs
WHEN NEW.dependents > 0 AND NEW.status IN ('succeeded', 'failed', 'cancelled')
     AND (OLD.status NOT IN ('succeeded', 'failed', 'cancelled')
          OR NEW.dependents <> OLD.dependents)
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

CREATE VIEW job_history AS
SELECT e.id, e.job_id, j.task, j.ref_type, j.ref_id, e.at, e.kind, e.attempt,
       w.name AS worker_name, w.host, w.pid, e.detail, e.child_pid, j.parent_id,
       coalesce(j.root_id, j.id) AS root_id
FROM events e
JOIN jobs j ON j.id = e.job_id
LEFT JOIN workers w ON w.id = e.worker_id;
