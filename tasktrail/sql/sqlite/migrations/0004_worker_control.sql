-- Migration 4 (SQLite): control of running workers and of queues (see the PostgreSQL
-- migration of the same number).

ALTER TABLE workers ADD COLUMN requested_processes INTEGER;
ALTER TABLE workers ADD COLUMN autoscale_min INTEGER;
ALTER TABLE workers ADD COLUMN autoscale_max INTEGER;

CREATE TABLE IF NOT EXISTS queues (
    name        TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    changed_at  TEXT NOT NULL,
    changed_by  TEXT NOT NULL
);
