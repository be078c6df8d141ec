-- Named statements of the SQLite backend. Parameters are named (:name) and always bound;
-- no value is ever formatted into SQL text.

-- The root of each parent's tree, for its follow-ups (a root's root_id is NULL).
-- name: job_roots
SELECT id, coalesce(root_id, id) FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- A job whose unique_key is already active is not inserted (no row comes back).
-- name: insert_job
INSERT INTO jobs (task, queue, status, ref_type, ref_id, priority, args, kwargs,
                  max_attempts, timeout, run_at, created_at, unique_key, lock_key, lock_limit,
                  rate_key, rate_limit, rate_window, parent_id, root_id, trace_context)
VALUES (:task, :queue, 'queued', :ref_type, :ref_id, :priority, :args, :kwargs,
        :max_attempts, :timeout, :run_at, :now, :unique_key, :lock_key, :lock_limit,
        :rate_key, :rate_limit, :rate_window, :parent_id, :root_id, :trace_context)
ON CONFLICT DO NOTHING
RETURNING id;

-- Jobs just inserted wait for others (after=), in three steps (see job_after and the
-- trigger jobs_release_dependents in schema.sql): each becomes `waiting`, a row per job
-- it waits for, and each of those counts its dependents (one that has ended already
-- releases them at once).
-- name: make_waiting
UPDATE jobs SET status = 'waiting', waiting_for = :count, after_policy = :policy
WHERE id = :job_id AND status = 'queued' AND attempts = 0 AND waiting_for IS NULL
RETURNING id;

-- name: insert_after
INSERT OR IGNORE INTO job_after (job_id, after_id) VALUES (:job_id, :after_id);

-- name: add_dependents
UPDATE jobs SET dependents = dependents + :count WHERE id = :after_id;

-- The jobs a job waits (or waited) for, how each ended and its result.
-- name: after_results
SELECT a.after_id, coalesce(j.status, a.after_status), j.result
FROM job_after a LEFT JOIN jobs j ON j.id = a.after_id
WHERE a.job_id = :job_id
ORDER BY a.after_id;

-- name: active_unique
SELECT id FROM jobs
WHERE unique_key = :unique_key AND status IN ('waiting', 'queued', 'reserved', 'running');

-- name: insert_event
INSERT INTO events (job_id, at, kind, attempt, worker_id, detail, child_pid)
VALUES (:job_id, :at, :kind, :attempt, :worker_id, :detail, :child_pid);

-- name: worker_lease
SELECT lease_seconds FROM workers WHERE id = :worker_id AND status = 'running';

-- Claimable jobs, best first. A job whose lock_key is held by a reserved or running job
-- waits (it stays queued and holds no worker slot).
-- name: claim_candidates
SELECT id, priority, run_at, lock_key, coalesce(lock_limit, 1) - held AS room,
       rate_key, rate_limit - started AS rate_room, rate_window
FROM (
    SELECT id, priority, run_at, lock_key, lock_limit, rate_key, rate_limit, rate_window,
           CASE WHEN lock_key IS NULL THEN 0 ELSE (
               SELECT count(*) FROM jobs AS h
               WHERE h.lock_key = j.lock_key AND h.status IN ('reserved', 'running')) END AS held,
           CASE WHEN rate_key IS NULL THEN 0 ELSE (
               SELECT count(*) FROM job_starts s
               WHERE s.rate_key = j.rate_key
                 AND s.at > :epoch - j.rate_window) END AS started
    FROM jobs AS j INDEXED BY jobs_claim
    WHERE status = 'queued' AND run_at <= :now
)
WHERE (lock_key IS NULL OR held < coalesce(lock_limit, 1))
  AND (rate_key IS NULL OR started < rate_limit)
ORDER BY priority DESC, run_at, id
LIMIT :limit;

-- name: claim_candidates_in_queue
SELECT id, priority, run_at, lock_key, coalesce(lock_limit, 1) - held AS room,
       rate_key, rate_limit - started AS rate_room, rate_window
FROM (
    SELECT id, priority, run_at, lock_key, lock_limit, rate_key, rate_limit, rate_window,
           CASE WHEN lock_key IS NULL THEN 0 ELSE (
               SELECT count(*) FROM jobs AS h
               WHERE h.lock_key = j.lock_key AND h.status IN ('reserved', 'running')) END AS held,
           CASE WHEN rate_key IS NULL THEN 0 ELSE (
               SELECT count(*) FROM job_starts s
               WHERE s.rate_key = j.rate_key
                 AND s.at > :epoch - j.rate_window) END AS started
    FROM jobs AS j INDEXED BY jobs_claim_by_queue
    WHERE status = 'queued' AND queue = :queue AND run_at <= :now
)
WHERE (lock_key IS NULL OR held < coalesce(lock_limit, 1))
  AND (rate_key IS NULL OR started < rate_limit)
ORDER BY priority DESC, run_at, id
LIMIT :limit;

-- (a job under a rate is only claimed to start now: its start is what the rate counts)
-- name: claim
UPDATE jobs SET status = 'reserved', worker_id = :worker_id
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'queued' AND rate_key IS NULL
RETURNING id, task, queue, status, ref_type, ref_id, priority, args, kwargs, attempts,
          max_attempts, timeout, worker_id, lock_key, NULL AS child_pid, trace_context;

-- Claimed straight into a worker's process: never waiting reserved.
-- name: claim_start
-- (A queued or reserved job has no finished_at: only a final status sets it, and retry,
-- the way out of one, clears it. Not setting it here keeps jobs_release_dependents,
-- declared for statements that set it, out of the claim.)
-- A job under a lock starts no earlier than the last end of its key's jobs: the
-- claim's time was taken before it waited for the write lock, and may lag behind an
-- end written meanwhile (the history would show two holders at once).
UPDATE jobs SET status = 'running', worker_id = :worker_id, attempts = attempts + 1,
                started_at = CASE WHEN lock_key IS NULL THEN :now ELSE max(:now, coalesce(
                    (SELECT max(f.finished_at) FROM jobs AS f INDEXED BY jobs_lock_ended
                     WHERE f.lock_key = jobs.lock_key), :now)) END
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'queued'
RETURNING id, task, queue, status, ref_type, ref_id, priority, args, kwargs, attempts,
          max_attempts, timeout, worker_id, lock_key, NULL AS child_pid, trace_context,
          started_at;

-- A start under a rate: the window's record (`at` in seconds since the epoch), and the starts
-- of that key older than the window and a minute are let go (kept that minute: a worker
-- whose clock or claim lags behind another's still finds the starts its window holds).
-- name: record_start
INSERT INTO job_starts (rate_key, at) VALUES (:rate_key, :epoch);

-- name: prune_starts
DELETE FROM job_starts
WHERE rate_key = :rate_key AND at <= :epoch - (:window + 60.0);

-- name: start
UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'reserved'
  AND worker_id = :worker_id
RETURNING id, task, queue, status, ref_type, ref_id, priority, args, kwargs, attempts,
          max_attempts, timeout, worker_id, lock_key, NULL AS child_pid, trace_context;

-- Record one outcome. Fenced: it changes the job only if the job is still running in
-- this worker's hands at this attempt. The new status, run_at and extra attempts come
-- from backends.common.transition, shared with PostgreSQL.
-- name: finish
UPDATE jobs
SET status = :status,
    finished_at = CASE WHEN :status IN ('succeeded', 'failed', 'cancelled')
                       THEN :finished_at ELSE finished_at END,
    result = CASE WHEN :status = 'succeeded' THEN :result ELSE result END,
    error = CASE WHEN :status = 'succeeded' THEN NULL ELSE coalesce(:error, error) END,
    run_at = coalesce(:run_at, run_at),
    max_attempts = max_attempts + :extra_attempts
WHERE id = :job_id AND status = 'running' AND worker_id = :worker_id AND attempts = :attempt;

-- Ended jobs that others wait for: naming dependents fires jobs_release_dependents,
-- which an outcome does not (see schema.sql).
-- name: touch_dependents
UPDATE jobs SET dependents = dependents
WHERE id IN (SELECT value FROM json_each(:ids)) AND dependents > 0
  AND status IN ('succeeded', 'failed', 'cancelled');

-- Jobs of a batch of outcomes whose cancel was requested while they ran, or that others
-- wait for (read once per batch: cheaper than a RETURNING on each outcome).
-- name: marked_among
SELECT id, cancel_requested_at IS NOT NULL, dependents > 0 FROM jobs
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'running'
  AND (cancel_requested_at IS NOT NULL OR dependents > 0);

-- name: job_exists
SELECT 1 FROM jobs WHERE id = :job_id;

-- name: release
UPDATE jobs SET status = 'queued'
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'reserved'
  AND worker_id = :worker_id
RETURNING id, attempts;

-- name: register_worker
INSERT INTO workers (name, host, pid, processes, reserve, queues, lease_seconds, status,
                     started_at, heartbeat_at, expires_at, autoscale_min, autoscale_max)
VALUES (:name, :host, :pid, :processes, :reserve, :queues, :lease_seconds, 'running',
        :now, :now, :expires_at, :autoscale_min, :autoscale_max)
RETURNING id;

-- name: heartbeat
UPDATE workers SET heartbeat_at = :now, expires_at = :expires_at
WHERE id = :worker_id AND status = 'running';

-- name: unregister_worker
UPDATE workers
SET status = CASE WHEN status = 'running' THEN 'stopped' ELSE status END,
    stopped_at = COALESCE(stopped_at, :now)
WHERE id = :worker_id;

-- name: expired_workers
SELECT id FROM workers WHERE status = 'running' AND expires_at < :now ORDER BY id;

-- name: mark_worker_lost
UPDATE workers SET status = 'lost', stopped_at = :now
WHERE id = :worker_id AND status = 'running';

-- name: recover_reserved
UPDATE jobs SET status = 'queued'
WHERE worker_id = :worker_id AND status = 'reserved'
RETURNING id, attempts;

-- name: recover_running_retry
UPDATE jobs SET status = 'queued', run_at = :now, error = :error
WHERE worker_id = :worker_id AND status = 'running' AND attempts < max_attempts
RETURNING id, attempts;

-- name: recover_running_fail
UPDATE jobs SET status = 'failed', finished_at = :now, error = :error,
                dependents = dependents  -- releases what waits for them
WHERE worker_id = :worker_id AND status = 'running'
RETURNING id, attempts;

-- name: cancel_waiting
UPDATE jobs SET status = 'cancelled', finished_at = :now,
                dependents = dependents  -- releases what waits for it
WHERE id = :job_id AND status IN ('waiting', 'queued', 'reserved')
RETURNING attempts;

-- A running job is killed by its worker; meanwhile it may not be retried.
-- name: request_cancel
UPDATE jobs SET cancel_requested_at = :now, max_attempts = attempts
WHERE id = :job_id AND status = 'running' AND cancel_requested_at IS NULL
RETURNING attempts;

-- name: cancel_requests
SELECT id FROM jobs
WHERE worker_id = :worker_id AND status IN ('reserved', 'running') AND status = 'running'
  AND cancel_requested_at IS NOT NULL;

-- A new attempt: a cancel asked of an earlier one does not apply to it.
-- name: retry_job
UPDATE jobs SET status = 'queued', run_at = :now, finished_at = NULL,
                max_attempts = MAX(max_attempts, attempts + 1), cancel_requested_at = NULL
WHERE id = :job_id AND status IN ('failed', 'cancelled')
RETURNING attempts;

-- The active job holding the unique key of job :job_id, which then cannot be retried.
-- name: unique_key_holder
SELECT a.id, a.status, a.unique_key FROM jobs AS j
JOIN jobs AS a ON a.unique_key = j.unique_key AND a.id <> j.id
WHERE j.id = :job_id AND a.status IN ('waiting', 'queued', 'reserved', 'running');

-- name: job_status
SELECT status FROM jobs WHERE id = :job_id;

-- A set of jobs and every follow-up below them (list_jobs with descendants): the head,
-- the conditions that select the set, the tail; then select_jobs of the ids in `tree`.
-- Each level is read through jobs_parent: as many index probes as jobs in the trees.
-- name: tree_head
WITH RECURSIVE tree (id) AS (SELECT j.id FROM jobs j WHERE

-- name: tree_tail
 UNION SELECT c.id FROM jobs c JOIN tree t ON c.parent_id = t.id)

-- name: select_jobs
SELECT j.id, j.task, j.queue, j.status, j.ref_type, j.ref_id, j.priority, j.args, j.kwargs,
       j.attempts, j.max_attempts, j.timeout, j.run_at, j.created_at, j.started_at,
       j.finished_at, j.worker_id, w.name AS worker_name, j.result, j.error, j.unique_key,
       j.lock_key, j.cancel_requested_at, j.parent_id, j.root_id, j.waiting_for,
       j.after_policy, j.lock_limit, j.rate_key, j.rate_limit, j.rate_window
FROM jobs j LEFT JOIN workers w ON w.id = j.worker_id;

-- name: list_events
SELECT e.id, e.job_id, e.at, e.kind, e.attempt, e.worker_id, w.name, w.host, w.pid, e.detail,
       e.child_pid
FROM events e LEFT JOIN workers w ON w.id = e.worker_id
WHERE e.job_id = :job_id
ORDER BY e.id;

-- name: list_workers
SELECT id, name, host, pid, processes, reserve, queues, status, started_at, heartbeat_at,
       expires_at, stopped_at, requested_processes, autoscale_min, autoscale_max
FROM workers
WHERE :include_stopped OR status = 'running'
ORDER BY id DESC
LIMIT :limit;

-- Active jobs by task and status, and the ids (comma-separated) of those that may hold
-- an attempt that ended within the window (for stats_runs): held ones that have started
-- before, and retries waiting in the queue (a queued job's run_at is never before the
-- end of its attempt before). One pass over the active jobs, through the partial indexes.
-- name: stats_active
SELECT task, status, count(*),
       group_concat(CASE WHEN attempts > 0 AND (status <> 'queued' OR run_at >= :since)
                         THEN id END)
FROM (
    SELECT id, task, status, attempts, run_at FROM jobs WHERE status = 'queued'
    UNION ALL
    SELECT id, task, status, attempts, run_at FROM jobs WHERE status IN ('reserved', 'running')
) AS active
GROUP BY task, status;

-- Jobs that reached a final status within [since, now), per stretch of `bucket` seconds
-- from `since`, task and status (through jobs_finished): the dashboard's charts.
-- name: ended_counts
SELECT CAST((julianday(finished_at) - julianday(:since)) * 86400.0 / :bucket AS INTEGER) AS slot,
       task, status, count(*)
FROM jobs
WHERE finished_at >= :since AND finished_at < :now
  AND status IN ('succeeded', 'failed', 'cancelled')
GROUP BY 1, 2, 3;

-- Jobs that reached a final status within the window, per task: how many ended in each
-- final status, and in how many clock minutes (since the epoch, UTC) they ended, for the
-- throughput per active minute. Counted here: a week of a busy queue is a million rows.
-- name: stats_finished
SELECT task,
       sum(status = 'succeeded'),
       sum(status = 'failed'),
       sum(status = 'cancelled'),
       count(DISTINCT CAST(strftime('%s', finished_at) AS INTEGER) / 60)
FROM jobs
WHERE finished_at >= :since AND finished_at <= :now
  AND status IN ('succeeded', 'failed', 'cancelled')
GROUP BY task;

-- The last wait (from run_at to the start of the last attempt) of the newest `sample`
-- jobs that reached a final status within the window and had started, through
-- jobs_finished: the wait percentiles.
-- name: stats_waits
SELECT task, (julianday(started_at) - julianday(run_at)) * 86400.0
FROM jobs
WHERE finished_at >= :since AND finished_at <= :now
  AND status IN ('succeeded', 'failed', 'cancelled') AND started_at IS NOT NULL
ORDER BY finished_at DESC
LIMIT :sample;

-- The run time of every attempt that ended in its child (succeeded, failed, timeout)
-- within the window, of the newest `sample` jobs finished in it and the active ones:
-- from its `started` event to that end event. Attempts that ended
-- otherwise (lost, interrupted, cancelled, deferred) are not runs. Only the history of
-- jobs that can hold such an attempt is read, through indexes: jobs finished since the
-- window began (jobs_finished), and the active ones stats_active named (primary key;
-- still active, so that a job that finished meanwhile is not read twice). An end event
-- with no `started` before it (a history written by hand) has no run time (NULL).
-- name: stats_runs
WITH candidate AS (
    SELECT * FROM (
        SELECT id, task FROM jobs
        WHERE finished_at >= :since AND status IN ('succeeded', 'failed', 'cancelled')
        ORDER BY finished_at DESC
        LIMIT :sample)
    UNION ALL
    SELECT id, task FROM jobs
    WHERE id IN (SELECT value FROM json_each(:active_ids))
      AND status IN ('queued', 'reserved', 'running')
)
SELECT c.task,
       (julianday(e.at) - julianday((
           SELECT b.at FROM events b
           WHERE b.job_id = e.job_id AND b.id < e.id AND b.kind = 'started'
             AND b.attempt = e.attempt
           ORDER BY b.id DESC
           LIMIT 1
       ))) * 86400.0 AS run_seconds
FROM candidate c
CROSS JOIN events e ON e.job_id = c.id
WHERE e.kind IN ('succeeded', 'failed', 'timeout')
  AND e.at >= :since AND e.at <= :now;

-- name: prune_events
DELETE FROM events WHERE job_id IN (
    SELECT id FROM jobs WHERE status = :status AND finished_at < :cutoff
);

-- name: prune_after
DELETE FROM job_after WHERE job_id IN (
    SELECT id FROM jobs WHERE status = :status AND finished_at < :cutoff
);

-- name: prune_jobs
DELETE FROM jobs WHERE status = :status AND finished_at < :cutoff;

-- Delete ledger rows past their reason to stay: rows naming a job that is gone and due
-- before `orphans_before`, rows with no job due before `unlinked_before` (NULL: none). The
-- schedules are found by skipping through the primary key, and each one's rows are read
-- through it from its oldest: never a scan of the whole ledger.
-- (A DELETE first, WITH inside it: sqlite3 counts the rows of a statement that begins
-- with DELETE only.)
-- name: prune_ticks
DELETE FROM schedule_ticks
WHERE schedule IN (
    WITH RECURSIVE name (schedule) AS (
        SELECT min(schedule) FROM schedule_ticks
        UNION ALL
        SELECT (SELECT min(t.schedule) FROM schedule_ticks t WHERE t.schedule > n.schedule)
        FROM name n
        WHERE n.schedule IS NOT NULL
    )
    SELECT schedule FROM name WHERE schedule IS NOT NULL
)
  AND due_at < :orphans_before
  AND CASE WHEN job_id IS NULL THEN due_at < :unlinked_before
           ELSE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = schedule_ticks.job_id) END;

-- Delete workers stopped or lost before `before` that no reserved or running job names
-- (jobs_held). A running worker is never deleted, and a stopped or lost one never holds
-- a job again (a worker that comes back registers anew).
-- name: prune_workers
DELETE FROM workers
WHERE status IN ('stopped', 'lost') AND stopped_at < :before
  AND NOT EXISTS (
      SELECT 1 FROM jobs j
      WHERE j.worker_id = workers.id AND j.status IN ('reserved', 'running'));

-- Schedules --------------------------------------------------------------------------

-- name: select_schedules
SELECT name, task, cron, every_seconds, args, kwargs, ref_type, ref_id, queue, priority,
       catch_up, skip_if_running, source, paused, anchor, next_due_at, last_due_at,
       last_job_id, created_at, updated_at, calendar
FROM schedules;

-- name: insert_schedule
INSERT INTO schedules (name, task, cron, every_seconds, args, kwargs, ref_type, ref_id, queue,
                       priority, catch_up, skip_if_running, source, paused, anchor,
                       next_due_at, created_at, updated_at, calendar)
VALUES (:name, :task, :cron, :every_seconds, :args, :kwargs, :ref_type, :ref_id, :queue,
        :priority, :catch_up, :skip_if_running, :source, 0, :anchor, :next_due_at, :now, :now,
        :calendar);

-- name: update_schedule
UPDATE schedules
SET task = :task, cron = :cron, every_seconds = :every_seconds, args = :args, kwargs = :kwargs,
    ref_type = :ref_type, ref_id = :ref_id, queue = :queue, priority = :priority,
    catch_up = :catch_up, skip_if_running = :skip_if_running, source = :source,
    anchor = :anchor, next_due_at = :next_due_at, updated_at = :now, calendar = :calendar
WHERE name = :name;

-- name: pause_schedule
UPDATE schedules SET paused = :paused, next_due_at = :next_due_at, updated_at = :now
WHERE name = :name;

-- name: delete_schedule
DELETE FROM schedules WHERE name = :name;

-- name: due_schedules
SELECT name FROM schedules INDEXED BY schedules_due
WHERE paused = 0 AND next_due_at <= :now
ORDER BY next_due_at;

-- name: advance_schedule
UPDATE schedules
SET next_due_at = :next_due_at, last_due_at = coalesce(:last_due_at, last_due_at),
    last_job_id = coalesce(:last_job_id, last_job_id), updated_at = :now
WHERE name = :name;

-- name: insert_tick
INSERT INTO schedule_ticks (schedule, due_at, outcome, job_id, reason, recorded_at, worker_id)
VALUES (:schedule, :due_at, :outcome, :job_id, :reason, :now, :worker_id)
ON CONFLICT (schedule, due_at) DO NOTHING;

-- name: set_tick
UPDATE schedule_ticks SET outcome = :outcome, job_id = :job_id, reason = :reason
WHERE schedule = :schedule AND due_at = :due_at;

-- name: list_ticks
SELECT schedule, due_at, outcome, job_id, reason, recorded_at, worker_id
FROM schedule_ticks WHERE schedule = :schedule
ORDER BY due_at DESC
LIMIT :limit;

-- Control of running workers and of queues -------------------------------------------

-- What a worker is asked to do, read once a second: a process count to scale to, and
-- the queues paused fleet-wide (a JSON array).
-- name: worker_control
SELECT requested_processes,
       (SELECT json_group_array(name) FROM (SELECT name FROM queues WHERE paused ORDER BY name))
FROM workers
WHERE id = :worker_id;

-- A worker's process count as it is now; a request for that count has been applied.
-- name: update_worker_processes
UPDATE workers
SET processes = :processes, reserve = :reserve,
    requested_processes = CASE WHEN requested_processes = :processes THEN NULL
                               ELSE requested_processes END
WHERE id = :worker_id;

-- name: request_processes
UPDATE workers SET requested_processes = :processes
WHERE name = :name AND status = 'running'
RETURNING id;

-- name: queued_queues
SELECT DISTINCT queue FROM jobs INDEXED BY jobs_claim_by_queue WHERE status = 'queued'
ORDER BY queue;

-- name: has_backlog
SELECT EXISTS (
    SELECT 1 FROM jobs
    WHERE status = 'queued' AND run_at <= :now
      AND (:any_queue OR queue IN (SELECT value FROM json_each(:queues)))
);

-- name: set_queue_paused
INSERT INTO queues (name, paused, changed_at, changed_by)
VALUES (:name, :paused, :now, :by)
ON CONFLICT (name) DO UPDATE
SET paused = excluded.paused, changed_at = excluded.changed_at, changed_by = excluded.changed_by;

-- Every queue with active jobs or a pause record: its state and depth.
-- name: list_queues
WITH queued AS (
    SELECT queue, count(*) AS n, min(run_at) AS oldest FROM jobs
    WHERE status = 'queued' GROUP BY queue
), held AS (
    SELECT queue, count(*) AS n FROM jobs WHERE status IN ('reserved', 'running') GROUP BY queue
), names AS (
    SELECT queue AS name FROM queued UNION SELECT queue FROM held UNION SELECT name FROM queues
)
SELECT n.name, coalesce(q.paused, 0), q.changed_at, q.changed_by, coalesce(d.n, 0),
       coalesce(h.n, 0), d.oldest
FROM names n
LEFT JOIN queues q ON q.name = n.name
LEFT JOIN queued d ON d.queue = n.name
LEFT JOIN held h ON h.queue = n.name
ORDER BY n.name;
