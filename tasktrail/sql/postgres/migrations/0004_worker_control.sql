-- Migration 4: control of running workers and of queues, fleet-wide.
-- A worker's process count can be changed while it runs (`tasktrail workers scale`: the
-- request waits in requested_processes until the worker applies it, within a second);
-- a worker may scale itself between autoscale_min and autoscale_max. A queue can be
-- paused (`tasktrail queues pause`): no worker claims from it until it is resumed.
-- Nullable columns without defaults and a new table: no rewrite, no long lock.

ALTER TABLE tasktrail.workers
    ADD COLUMN IF NOT EXISTS requested_processes integer,
    ADD COLUMN IF NOT EXISTS autoscale_min integer,
    ADD COLUMN IF NOT EXISTS autoscale_max integer;

CREATE TABLE IF NOT EXISTS tasktrail.queues (
    name        text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    changed_at  timestamptz NOT NULL,
    changed_by  text NOT NULL
);
