-- Named statements of the PostgreSQL backend. Every value is a bound parameter
-- (%(name)s); the schema name `tasktrail` is replaced by the configured, validated one.
-- Each statement that changes jobs writes their history events in the same statement.

-- A job whose unique_key is already active (or taken earlier in the batch) is not
-- inserted; the ids returned come with their unique_key so the caller can tell.
-- name: enqueue
WITH new_jobs AS (
    INSERT INTO tasktrail.jobs (task, queue, status, ref_type, ref_id, priority, args, kwargs,
                                max_attempts, timeout, run_at, created_at, unique_key, lock_key,
                                lock_limit, rate_key, rate_limit, rate_window, parent_id,
                                root_id, trace_context)
    SELECT t.task, t.queue, 'queued', t.ref_type, t.ref_id, t.priority, t.args::json,
           t.kwargs::json, t.max_attempts, t.timeout, coalesce(t.run_at, %(now)s), %(now)s,
           t.unique_key, t.lock_key, t.lock_limit, t.rate_key, t.rate_limit, t.rate_window,
           t.parent_id, t.root_id, t.trace_context
    -- the batch is one JSON document: parsed by the server, not bound value by value
    FROM json_to_recordset(%(jobs)s::json)
         AS t(ord integer, task text, queue text, ref_type text, ref_id text, priority smallint,
              args text, kwargs text, max_attempts integer, timeout double precision,
              run_at timestamptz, unique_key text, lock_key text, lock_limit integer,
              rate_key text, rate_limit integer, rate_window double precision,
              parent_id bigint, root_id bigint, trace_context text)
    ORDER BY t.ord
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND status IN ('waiting', 'queued', 'reserved', 'running')
        DO NOTHING
    RETURNING id, unique_key
), events AS (
    INSERT INTO tasktrail.events (job_id, at, kind, attempt)
    SELECT id, %(now)s, 'enqueued', 0 FROM new_jobs
)
SELECT id, unique_key FROM new_jobs ORDER BY id;

-- One job (task.enqueue, the common call): `enqueue` with plain parameters, which the
-- server reads quicker than a one-row document.
-- name: enqueue_one
WITH new_job AS (
    INSERT INTO tasktrail.jobs (task, queue, status, ref_type, ref_id, priority, args, kwargs,
                                max_attempts, timeout, run_at, created_at, unique_key, lock_key,
                                lock_limit, rate_key, rate_limit, rate_window, parent_id,
                                root_id, trace_context)
    VALUES (%(task)s::text, %(queue)s::text, 'queued', %(ref_type)s::text, %(ref_id)s::text,
            %(priority)s::smallint, %(args)s::json, %(kwargs)s::json, %(max_attempts)s::integer,
            %(timeout)s::double precision, coalesce(%(run_at)s::timestamptz, %(now)s),
            %(now)s, %(unique_key)s::text, %(lock_key)s::text, %(lock_limit)s::integer,
            %(rate_key)s::text, %(rate_limit)s::integer, %(rate_window)s::double precision,
            %(parent_id)s::bigint, %(root_id)s::bigint, %(trace_context)s::text)
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND status IN ('waiting', 'queued', 'reserved', 'running')
        DO NOTHING
    RETURNING id, unique_key
), events AS (
    INSERT INTO tasktrail.events (job_id, at, kind, attempt)
    SELECT id, %(now)s, 'enqueued', 0 FROM new_job
)
SELECT id, unique_key FROM new_job;

-- A big batch without unique keys (app.enqueue_many) goes by binary COPY, in one
-- transaction: first its ids, taken from the jobs' identity sequence by a statement that
-- also writes their `enqueued` events (history has no foreign key to wait for), then
-- the jobs (the notify trigger fires for a COPY as for an INSERT). The first columns of
-- copy_jobs are those of backends.common.new_job_columns, in its order. The sequence is
-- looked up once: per row, that look-up costs ten times the nextval.
-- name: new_job_ids
WITH seq AS MATERIALIZED (
    SELECT pg_get_serial_sequence('tasktrail.jobs', 'id')::regclass AS oid
), ids AS MATERIALIZED (
    SELECT nextval(seq.oid) AS id FROM seq, generate_series(1, %(count)s::integer)
), events AS (
    INSERT INTO tasktrail.events (job_id, at, kind, attempt)
    SELECT id, %(now)s, 'enqueued', 0 FROM ids
)
SELECT id FROM ids ORDER BY id;

-- name: copy_jobs
COPY tasktrail.jobs (task, queue, ref_type, ref_id, priority, args, kwargs, max_attempts,
                     timeout, unique_key, lock_key, lock_limit, rate_key, rate_limit,
                     rate_window, parent_id, root_id, trace_context, id, status, run_at,
                     created_at)
FROM STDIN (FORMAT BINARY);

-- The root of each parent's tree, for its follow-ups (a root's root_id is NULL).
-- name: job_roots
SELECT id, coalesce(root_id, id) FROM tasktrail.jobs WHERE id = ANY (%(ids)s::bigint[]);

-- Jobs just inserted wait for others (after=): see wait_for_jobs in schema.sql.
-- name: wait_for_jobs
SELECT tasktrail.wait_for_jobs(%(links)s::json, %(now)s);

-- The jobs a job waits (or waited) for, how each ended and its result.
-- name: after_results
SELECT a.after_id, coalesce(j.status, a.after_status), j.result
FROM tasktrail.job_after a LEFT JOIN tasktrail.jobs j ON j.id = a.after_id
WHERE a.job_id = %(job_id)s
ORDER BY a.after_id;

-- name: active_unique
SELECT id, unique_key FROM tasktrail.jobs
WHERE unique_key = ANY (%(keys)s::text[])
  AND status IN ('waiting', 'queued', 'reserved', 'running');

-- name: release
WITH released AS (
    UPDATE tasktrail.jobs SET status = 'queued'
    WHERE id = ANY (%(ids)s::bigint[]) AND status = 'reserved' AND worker_id = %(worker_id)s
    RETURNING id, attempts
), events AS (
    INSERT INTO tasktrail.events (job_id, at, kind, attempt, worker_id, detail)
    SELECT id, %(now)s, 'released', attempts, %(worker_id)s,
           json_build_object('reason', %(reason)s::text)
    FROM released
)
SELECT id FROM released;

-- name: notify
SELECT pg_notify('tasktrail', q) FROM unnest(%(queues)s::text[]) AS q;

-- name: register_worker
INSERT INTO tasktrail.workers (name, host, pid, processes, reserve, queues, lease_seconds,
                               status, started_at, heartbeat_at, expires_at, autoscale_min,
                               autoscale_max)
VALUES (%(name)s, %(host)s, %(pid)s, %(processes)s, %(reserve)s, %(queues)s::text[],
        %(lease_seconds)s, 'running', %(now)s, %(now)s,
        %(now)s + %(lease_seconds)s * interval '1 second', %(autoscale_min)s,
        %(autoscale_max)s)
RETURNING id;

-- name: heartbeat
UPDATE tasktrail.workers
SET heartbeat_at = %(now)s, expires_at = %(now)s + lease_seconds * interval '1 second'
WHERE id = %(worker_id)s AND status = 'running'
RETURNING id;

-- name: unregister_worker
WITH stopped AS (
    UPDATE tasktrail.workers
    SET status = CASE WHEN status = 'running' THEN 'stopped' ELSE status END,
        stopped_at = coalesce(stopped_at, %(now)s)
    WHERE id = %(worker_id)s
    RETURNING id
)
SELECT count(*) FROM stopped;

-- name: take_back
SELECT job_id, worker_id, was, became
FROM tasktrail.take_back_jobs(%(worker_ids)s::bigint[], %(now)s, %(error_template)s);

-- name: mark_expired_workers_lost
UPDATE tasktrail.workers SET status = 'lost', stopped_at = %(now)s
WHERE id IN (
    SELECT id FROM tasktrail.workers
    WHERE status = 'running' AND expires_at < %(now)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id;

-- name: any_expired_worker
SELECT EXISTS (
    SELECT 1 FROM tasktrail.workers WHERE status = 'running' AND expires_at < %(now)s
);

-- name: cancel_waiting
WITH cancelled AS (
    UPDATE tasktrail.jobs SET status = 'cancelled', finished_at = %(now)s
    WHERE id = %(job_id)s AND status IN ('waiting', 'queued', 'reserved')
    RETURNING id, attempts
), events AS (
    INSERT INTO tasktrail.events (job_id, at, kind, attempt, detail)
    SELECT id, %(now)s, 'cancelled', attempts, %(detail)s::json FROM cancelled
)
SELECT id FROM cancelled;

-- A running job is killed by its worker (woken by the notification); meanwhile it may not
-- be retried.
-- name: request_cancel
WITH requested AS (
    UPDATE tasktrail.jobs SET cancel_requested_at = %(now)s, max_attempts = attempts
    WHERE id = %(job_id)s AND status = 'running' AND cancel_requested_at IS NULL
    RETURNING id, attempts
), events AS (
    INSERT INTO tasktrail.events (job_id, at, kind, attempt, detail)
    SELECT id, %(now)s, 'cancel_requested', attempts, %(detail)s::json FROM requested
)
SELECT id, pg_notify('tasktrail', 'cancel') FROM requested;

-- name: cancel_requests
SELECT id FROM tasktrail.jobs
WHERE worker_id = %(worker_id)s AND status IN ('reserved', 'running') AND status = 'running'
  AND cancel_requested_at IS NOT NULL;

-- name: retry_job
WITH retried AS (
    UPDATE tasktrail.jobs
    SET status = 'queued', run_at = %(now)s, finished_at = NULL,
        max_attempts = greatest(max_attempts, attempts + 1), cancel_requested_at = NULL
    WHERE id = %(job_id)s AND status IN ('failed', 'cancelled')
    RETURNING id, attempts, queue
), events AS (
    INSERT INTO tasktrail.events (job_id, at, kind, attempt, detail)
    SELECT id, %(now)s, 'retried', attempts, %(detail)s::json FROM retried
)
SELECT id, pg_notify('tasktrail', queue) FROM retried;

-- name: unique_key_holder
SELECT a.id, a.status, a.unique_key FROM tasktrail.jobs AS j
JOIN tasktrail.jobs AS a ON a.unique_key = j.unique_key AND a.id <> j.id
WHERE j.id = %(job_id)s AND a.status IN ('waiting', 'queued', 'reserved', 'running');

-- name: job_status
SELECT status FROM tasktrail.jobs WHERE id = %(job_id)s;

-- A set of jobs and every follow-up below them (list_jobs with descendants): the head,
-- the conditions that select the set, the tail; then select_jobs of the ids in `tree`.
-- Each level is read through jobs_parent: as many index probes as jobs in the trees.
-- name: tree_head
WITH RECURSIVE tree (id) AS (SELECT j.id FROM tasktrail.jobs j WHERE

-- name: tree_tail
 UNION SELECT c.id FROM tasktrail.jobs c JOIN tree t ON c.parent_id = t.id)

-- name: select_jobs
SELECT j.id, j.task, j.queue, j.status, j.ref_type, j.ref_id, j.priority, j.args, j.kwargs,
       j.attempts, j.max_attempts, j.timeout, j.run_at, j.created_at, j.started_at,
       j.finished_at, j.worker_id, w.name AS worker_name, j.result, j.error, j.unique_key,
       j.lock_key, j.cancel_requested_at, j.parent_id, j.root_id, j.waiting_for,
       j.after_policy, j.lock_limit, j.rate_key, j.rate_limit, j.rate_window
FROM tasktrail.jobs j LEFT JOIN tasktrail.workers w ON w.id = j.worker_id;

-- name: list_events
SELECT e.id, e.job_id, e.at, e.kind, e.attempt, e.worker_id, w.name, w.host, w.pid, e.detail,
       e.child_pid
FROM tasktrail.events e LEFT JOIN tasktrail.workers w ON w.id = e.worker_id
WHERE e.job_id = %(job_id)s
ORDER BY e.id;

-- name: list_workers
SELECT id, name, host, pid, processes, reserve, queues, status, started_at, heartbeat_at,
       expires_at, stopped_at, requested_processes, autoscale_min, autoscale_max
FROM tasktrail.workers
WHERE %(include_stopped)s OR status = 'running'
ORDER BY id DESC
LIMIT %(limit)s;

-- Active jobs by task and status, and the ids of those that may hold an attempt that
-- ended within the window (for stats_runs): held ones that have started before, and
-- retries waiting in the queue (a queued job's run_at is never before the end of its
-- attempt before). One pass over the active jobs, through the partial indexes.
-- name: stats_active
SELECT task, status, count(*),
       array_agg(id) FILTER (WHERE attempts > 0 AND (status <> 'queued' OR run_at >= %(since)s))
FROM (
    SELECT id, task, status, attempts, run_at FROM tasktrail.jobs WHERE status = 'queued'
    UNION ALL
    SELECT id, task, status, attempts, run_at FROM tasktrail.jobs
    WHERE status IN ('reserved', 'running')
) AS active
GROUP BY task, status;

-- Jobs that reached a final status within [since, now), per stretch of `bucket` seconds
-- from `since`, task and status (through jobs_finished): the dashboard's charts.
-- name: ended_counts
SELECT floor(extract(epoch FROM finished_at - %(since)s) / %(bucket)s)::integer AS slot,
       task, status, count(*)
FROM tasktrail.jobs
WHERE finished_at >= %(since)s AND finished_at < %(now)s
  AND status IN ('succeeded', 'failed', 'cancelled')
GROUP BY 1, 2, 3;

-- Jobs that reached a final status within the window, per task: how many ended in each
-- final status, and in how many clock minutes (since the epoch, UTC) they ended, for the
-- throughput per active minute. Counted here: a week of a busy queue is a million rows.
-- name: stats_finished
SELECT task,
       count(*) FILTER (WHERE status = 'succeeded'),
       count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'cancelled'),
       count(DISTINCT floor(extract(epoch FROM finished_at) / 60))
FROM tasktrail.jobs
WHERE finished_at >= %(since)s AND finished_at <= %(now)s
  AND status IN ('succeeded', 'failed', 'cancelled')
GROUP BY task;

-- The last wait (from run_at to the start of the last attempt) of the newest `sample`
-- jobs that reached a final status within the window and had started, through
-- jobs_finished: the wait percentiles.
-- name: stats_waits
SELECT task, extract(epoch FROM started_at - run_at)::double precision
FROM tasktrail.jobs
WHERE finished_at >= %(since)s AND finished_at <= %(now)s
  AND status IN ('succeeded', 'failed', 'cancelled') AND started_at IS NOT NULL
ORDER BY finished_at DESC
LIMIT %(sample)s;

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
    (SELECT id, task FROM tasktrail.jobs
     WHERE finished_at >= %(since)s AND status IN ('succeeded', 'failed', 'cancelled')
     ORDER BY finished_at DESC
     LIMIT %(sample)s)
    UNION ALL
    SELECT id, task FROM tasktrail.jobs
    WHERE id = ANY (%(active_ids)s::bigint[]) AND status IN ('queued', 'reserved', 'running')
)
SELECT c.task,
       extract(epoch FROM e.at - (
           SELECT b.at FROM tasktrail.events b
           WHERE b.job_id = c.id AND b.id < e.id AND b.kind = 'started'
             AND b.attempt = e.attempt
           ORDER BY b.id DESC
           LIMIT 1
       ))::double precision AS run_seconds
FROM candidate c
CROSS JOIN LATERAL (
    -- each candidate's own history through events_job: OFFSET 0 keeps the planner from
    -- hashing a scan of every event instead
    SELECT e.id, e.at, e.attempt FROM tasktrail.events e
    WHERE e.job_id = c.id AND e.kind IN ('succeeded', 'failed', 'timeout')
      AND e.at >= %(since)s AND e.at <= %(now)s
    OFFSET 0
) AS e;

-- Delete one batch of final jobs past their retention, and their history.
-- name: prune_batch
WITH doomed AS (
    SELECT id FROM tasktrail.jobs
    WHERE status = %(status)s AND finished_at < %(cutoff)s
    ORDER BY finished_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), gone_events AS (
    DELETE FROM tasktrail.events WHERE job_id IN (SELECT id FROM doomed) RETURNING 1
), gone_links AS (
    DELETE FROM tasktrail.job_after WHERE job_id IN (SELECT id FROM doomed)
), gone_jobs AS (
    DELETE FROM tasktrail.jobs WHERE id IN (SELECT id FROM doomed) RETURNING 1
)
SELECT (SELECT count(*) FROM gone_jobs), (SELECT count(*) FROM gone_events);

-- Delete ledger rows past their reason to stay, for up to `names` schedules after
-- `after` (a name; '' to begin), at most `batch` rows: rows naming a job that is gone
-- and due before `orphans_before`, rows with no job due before `unlinked_before`
-- (NULL: none). The schedules are found by skipping through the primary key, and each
-- one's rows are read through it from its oldest: never a scan of the whole ledger.
-- Returns the last name of the chunk (NULL: no more), how many names it had, and the
-- rows deleted (= batch: call again from the same name).
-- name: prune_ticks
WITH RECURSIVE name (schedule) AS (
    (SELECT schedule FROM tasktrail.schedule_ticks WHERE schedule > %(after)s
     ORDER BY schedule LIMIT 1)
    UNION ALL
    SELECT (SELECT t.schedule FROM tasktrail.schedule_ticks t WHERE t.schedule > n.schedule
            ORDER BY t.schedule LIMIT 1)
    FROM name n
    WHERE n.schedule IS NOT NULL
), chunk AS (
    SELECT schedule FROM name WHERE schedule IS NOT NULL LIMIT %(names)s
), doomed AS (
    SELECT t.schedule, t.due_at
    FROM chunk c
    JOIN tasktrail.schedule_ticks t ON t.schedule = c.schedule AND t.due_at < %(orphans_before)s
    WHERE CASE WHEN t.job_id IS NULL THEN t.due_at < %(unlinked_before)s
               ELSE NOT EXISTS (SELECT 1 FROM tasktrail.jobs j WHERE j.id = t.job_id) END
    LIMIT %(batch)s
    FOR UPDATE OF t SKIP LOCKED
), gone AS (
    DELETE FROM tasktrail.schedule_ticks t USING doomed d
    WHERE t.schedule = d.schedule AND t.due_at = d.due_at
    RETURNING 1
)
SELECT (SELECT max(schedule) FROM chunk), (SELECT count(*) FROM chunk),
       (SELECT count(*) FROM gone);

-- Delete workers stopped or lost before `before` that no reserved or running job names
-- (jobs_held). A running worker is never deleted, and a stopped or lost one never holds
-- a job again (a worker that comes back registers anew).
-- name: prune_workers
WITH doomed AS (
    SELECT w.id FROM tasktrail.workers w
    WHERE w.status IN ('stopped', 'lost') AND w.stopped_at < %(before)s
      AND NOT EXISTS (
          SELECT 1 FROM tasktrail.jobs j
          WHERE j.worker_id = w.id AND j.status IN ('reserved', 'running'))
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM tasktrail.workers w USING doomed d WHERE w.id = d.id RETURNING 1
)
SELECT count(*) FROM gone;

-- Delete the rows of lock keys nobody has held for an hour (job_limits keeps a key's
-- last end for the next claim; an hour is far past any claim's lag).
-- name: prune_limits
DELETE FROM tasktrail.job_limits
WHERE held <= 0 AND (freed_at IS NULL OR freed_at < %(before)s);

-- name: schema_version
SELECT max(version) FROM tasktrail.migrations;

-- Schedules --------------------------------------------------------------------------

-- name: select_schedules
SELECT name, task, cron, every_seconds, args::text, kwargs::text, ref_type, ref_id, queue,
       priority, catch_up, skip_if_running, source, paused, anchor, next_due_at, last_due_at,
       last_job_id, created_at, updated_at, calendar
FROM tasktrail.schedules;

-- name: lock_schedule_name
SELECT pg_advisory_xact_lock(hashtext('tasktrail.schedules'), hashtext(%(name)s));

-- name: insert_schedule
INSERT INTO tasktrail.schedules (name, task, cron, every_seconds, args, kwargs, ref_type,
                                 ref_id, queue, priority, catch_up, skip_if_running, source,
                                 paused, anchor, next_due_at, created_at, updated_at, calendar)
VALUES (%(name)s, %(task)s, %(cron)s, %(every_seconds)s, %(args)s::json, %(kwargs)s::json,
        %(ref_type)s, %(ref_id)s, %(queue)s, %(priority)s, %(catch_up)s, %(skip_if_running)s,
        %(source)s, false, %(anchor)s, %(next_due_at)s, %(now)s, %(now)s, %(calendar)s);

-- name: update_schedule
UPDATE tasktrail.schedules
SET task = %(task)s, cron = %(cron)s, every_seconds = %(every_seconds)s, args = %(args)s::json,
    kwargs = %(kwargs)s::json, ref_type = %(ref_type)s, ref_id = %(ref_id)s, queue = %(queue)s,
    priority = %(priority)s, catch_up = %(catch_up)s, skip_if_running = %(skip_if_running)s,
    source = %(source)s, anchor = %(anchor)s, next_due_at = %(next_due_at)s, updated_at = %(now)s,
    calendar = %(calendar)s
WHERE name = %(name)s;

-- name: pause_schedule
UPDATE tasktrail.schedules
SET paused = %(paused)s, next_due_at = %(next_due_at)s, updated_at = %(now)s
WHERE name = %(name)s;

-- name: delete_schedule
DELETE FROM tasktrail.schedules WHERE name = %(name)s RETURNING name;

-- name: any_due_schedule
SELECT EXISTS (
    SELECT 1 FROM tasktrail.schedules WHERE NOT paused AND next_due_at <= %(now)s
);

-- Due schedules, locked for this transaction; another worker firing at the same moment
-- skips them (and the ledger's primary key would refuse a second firing anyway).
-- name: due_schedules
SELECT name, task, cron, every_seconds, args::text, kwargs::text, ref_type, ref_id, queue,
       priority, catch_up, skip_if_running, source, paused, anchor, next_due_at, last_due_at,
       last_job_id, created_at, updated_at, calendar
FROM tasktrail.schedules
WHERE NOT paused AND next_due_at <= %(now)s
ORDER BY next_due_at
FOR UPDATE SKIP LOCKED;

-- name: advance_schedule
UPDATE tasktrail.schedules
SET next_due_at = %(next_due_at)s, last_due_at = coalesce(%(last_due_at)s, last_due_at),
    last_job_id = coalesce(%(last_job_id)s, last_job_id), updated_at = %(now)s
WHERE name = %(name)s;

-- name: insert_tick
INSERT INTO tasktrail.schedule_ticks (schedule, due_at, outcome, job_id, reason, recorded_at,
                                      worker_id)
VALUES (%(schedule)s, %(due_at)s, %(outcome)s, %(job_id)s, %(reason)s, %(now)s, %(worker_id)s)
ON CONFLICT (schedule, due_at) DO NOTHING
RETURNING 1;

-- name: set_tick
UPDATE tasktrail.schedule_ticks SET outcome = %(outcome)s, job_id = %(job_id)s, reason = %(reason)s
WHERE schedule = %(schedule)s AND due_at = %(due_at)s;

-- name: list_ticks
SELECT schedule, due_at, outcome, job_id, reason, recorded_at, worker_id
FROM tasktrail.schedule_ticks WHERE schedule = %(schedule)s
ORDER BY due_at DESC
LIMIT %(limit)s;

-- The worker's hot path in one statement (one round trip, one commit): record outcomes
-- (fenced, as `finish`), start reserved jobs (as `start`), and claim new ones (as
-- `claim_*`), the first `start_claimed` of which start at once. The three touch disjoint
-- rows: running, reserved and queued jobs as of the statement's snapshot. Every row of
-- the result is one started or reserved job; `rejected` (the same on every row) lists the
-- outcomes the fence refused, and one row with only `rejected` comes back if no job does.
-- name: exchange
WITH outcome AS (
    SELECT *
    FROM json_to_recordset(%(outcomes)s::json)
         AS o(job_id bigint, attempt integer, result text, status text, ended_at timestamptz,
              error text, run_at timestamptz, extra_attempts integer, c_status text,
              c_ended_at timestamptz, c_error text, c_run_at timestamptz,
              c_extra_attempts integer, rejected_detail text, event text, event_detail text,
              child_pid integer)
), released AS MATERIALIZED (
    -- the lock keys of the jobs these outcomes end, locked first and in the keys' order
    -- (see lock_released_keys): two exchanges releasing the same keys cannot deadlock.
    -- Not called while no key is in use (the no-op drain: it cost that exchange 4 in 100).
    SELECT CASE WHEN EXISTS (SELECT 1 FROM tasktrail.job_limits)
                THEN tasktrail.lock_released_keys(ARRAY(SELECT job_id FROM outcome))
                ELSE 0 END AS locked
), applied AS (
    -- a job whose cancellation was asked meanwhile takes the c_ (cancelling) variant, if
    -- the outcome has one (a success has none: c_status is left out); `ended_at` is set
    -- for outcomes that end the job (its finished_at)
    UPDATE tasktrail.jobs j
    SET status = CASE WHEN j.cancel_requested_at IS NULL OR o.c_status IS NULL
                      THEN o.status ELSE o.c_status END,
        finished_at = coalesce(
            CASE WHEN j.cancel_requested_at IS NULL OR o.c_status IS NULL
                 THEN o.ended_at ELSE o.c_ended_at END,
            j.finished_at),
        result = CASE WHEN o.status = 'succeeded' THEN o.result::json ELSE j.result END,
        error = CASE WHEN o.status = 'succeeded' THEN NULL
                     ELSE coalesce(CASE WHEN j.cancel_requested_at IS NULL OR o.c_status IS NULL
                                        THEN o.error ELSE o.c_error END, j.error) END,
        run_at = coalesce(
            CASE WHEN j.cancel_requested_at IS NULL OR o.c_status IS NULL
                 THEN o.run_at ELSE o.c_run_at END,
            j.run_at),
        max_attempts = j.max_attempts + coalesce(
            CASE WHEN j.cancel_requested_at IS NULL OR o.c_status IS NULL
                 THEN o.extra_attempts ELSE o.c_extra_attempts END,
            0)
    FROM outcome o
    WHERE j.id = o.job_id AND j.status = 'running' AND j.worker_id = %(worker_id)s
      AND j.attempts = o.attempt AND (SELECT locked FROM released) >= 0
    RETURNING j.id, j.cancel_requested_at IS NOT NULL AS cancelling, j.status, j.run_at, j.queue
), requeued AS (
    -- jobs given back to run now (a worker stopping, a process that never began one):
    -- wake the idle workers of their queues, as an enqueue does
    SELECT pg_notify('tasktrail', q.queue)
    FROM (SELECT DISTINCT queue FROM applied WHERE status = 'queued' AND run_at <= %(now)s) AS q
), outcome_events AS (
    -- the events of applied outcomes (tagged `both`, or by which variant applied), and
    -- one outcome_rejected per refused outcome of a job that exists
    INSERT INTO tasktrail.events (job_id, at, kind, attempt, worker_id, detail, child_pid)
    SELECT x.job_id, x.at, x.kind, x.attempt, %(worker_id)s, x.detail::json, x.child_pid
    FROM (
        -- an outcome with one event, the same whatever the variant (a success), carries
        -- it itself: `event` at `ended_at`
        SELECT o.job_id, o.ended_at AS at, o.event AS kind, o.attempt, o.event_detail AS detail,
               -2 AS ord, o.child_pid
        FROM outcome o JOIN applied a ON a.id = o.job_id
        WHERE o.event IS NOT NULL
        UNION ALL
        SELECT e.job_id, e.at, e.kind, e.attempt, e.detail, e.ord, e.child_pid
        FROM json_to_recordset(%(events)s::json)
             AS e(job_id bigint, at timestamptz, kind text, attempt integer, detail text,
                  which text, ord integer, child_pid integer)
        JOIN applied a ON a.id = e.job_id
        WHERE e.which IN ('both', CASE WHEN a.cancelling THEN 'cancelling' ELSE 'applied' END)
        UNION ALL
        SELECT o.job_id, %(now)s, 'outcome_rejected', o.attempt, o.rejected_detail, -1,
               o.child_pid
        FROM outcome o
        -- (LATERAL ... LIMIT 1: one primary-key look-up per outcome, never a hash join
        -- over every job, whatever the planner thinks of the table)
        CROSS JOIN LATERAL (SELECT 1 FROM tasktrail.jobs j WHERE j.id = o.job_id LIMIT 1) AS known
        WHERE NOT EXISTS (SELECT 1 FROM applied a WHERE a.id = o.job_id)
    ) AS x
    ORDER BY x.ord
    RETURNING job_id, kind
), rejected AS (
    -- refused by the fence, of jobs that exist (no event is written for the others)
    SELECT array_agg(DISTINCT job_id) AS ids FROM outcome_events
    WHERE kind = 'outcome_rejected'
), started AS (
    UPDATE tasktrail.jobs
    SET status = 'running', attempts = attempts + 1, started_at = %(now)s, finished_at = NULL
    WHERE id = ANY (%(start_ids)s::bigint[]) AND status = 'reserved'
      AND worker_id = %(worker_id)s
    RETURNING id, task, queue, status, ref_type, ref_id, priority, args, kwargs, attempts,
              max_attempts, timeout, worker_id, lock_key, trace_context
), worker AS (
    -- Locked (FOR SHARE) so that a recovery declaring this worker lost and taking back
    -- its jobs (its FOR UPDATE) either comes first, and then this claim sees the worker
    -- lost and takes nothing, or after, and sees what was claimed: never a job claimed
    -- for a worker already declared lost, which nobody would take back.
    SELECT id FROM tasktrail.workers WHERE id = %(worker_id)s AND status = 'running'
    FOR SHARE
), candidates AS (
    SELECT c.id, c.priority, c.run_at
    FROM tasktrail.claimable_jobs(
        %(now)s, %(claim)s, CASE WHEN %(any_queue)s THEN NULL ELSE %(queues)s::text[] END
    ) AS c
    WHERE %(claim)s > 0 AND EXISTS (SELECT 1 FROM worker)
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(claim)s
), chosen AS (
    SELECT id, row_number() OVER (ORDER BY priority DESC, run_at, id) AS rank FROM candidates
), claimed AS (
    UPDATE tasktrail.jobs j
    SET status = CASE WHEN c.rank <= %(start_claimed)s THEN 'running' ELSE 'reserved' END,
        worker_id = %(worker_id)s,
        attempts = j.attempts + CASE WHEN c.rank <= %(start_claimed)s THEN 1 ELSE 0 END,
        started_at = CASE WHEN c.rank <= %(start_claimed)s THEN %(now)s ELSE j.started_at END,
        finished_at = CASE WHEN c.rank <= %(start_claimed)s THEN NULL ELSE j.finished_at END
    FROM chosen c
    WHERE j.id = c.id AND j.id = ANY (ARRAY(SELECT id FROM chosen))
      -- a job under a rate is only claimed to start now (never left reserved to start
      -- later: its start is what the rate counts)
      AND (j.rate_key IS NULL OR c.rank <= %(start_claimed)s)
    -- a job started at once is started for a child process: the worker names it; it
    -- started at started_at (jobs_admit may have moved it past its key's last end)
    RETURNING j.id, j.task, j.queue, j.status, j.ref_type, j.ref_id, j.priority, j.args,
              j.kwargs, j.attempts, j.max_attempts, j.timeout, j.worker_id, j.lock_key, c.rank,
              CASE WHEN c.rank <= %(start_claimed)s
                   THEN (%(child_pids)s::integer[])[c.rank] END AS child_pid,
              CASE WHEN c.rank <= %(start_claimed)s THEN j.started_at END AS started_at,
              j.trace_context
), job_events AS (
    INSERT INTO tasktrail.events (job_id, at, kind, attempt, worker_id, child_pid)
    SELECT job_id, coalesce(at, %(now)s), kind, attempt, %(worker_id)s, child_pid
    FROM (
        -- a job claimed straight into a process was never waiting reserved: one event
        SELECT id AS job_id, NULL::timestamptz AS at, 'started' AS kind, attempts AS attempt,
               0 AS step, NULL::integer AS child_pid
        FROM started
        UNION ALL
        SELECT id, started_at, CASE WHEN status = 'running' THEN 'started' ELSE 'reserved' END,
               attempts, 1, child_pid
        FROM claimed
    ) AS e
    -- after the outcomes' events: a slot a finished job frees is taken afterwards, also
    -- in history (reading outcome_events makes it run first)
    WHERE (SELECT count(*) FROM outcome_events) >= 0
    ORDER BY job_id, step
), result AS (
    SELECT 0 AS part, 0 AS rank, id, task, queue, status, ref_type, ref_id, priority, args,
           kwargs, attempts, max_attempts, timeout, worker_id, lock_key, NULL::integer AS child_pid,
           trace_context
    FROM started
    UNION ALL
    SELECT 1, rank, id, task, queue, status, ref_type, ref_id, priority, args, kwargs,
           attempts, max_attempts, timeout, worker_id, lock_key, child_pid, trace_context
    FROM claimed
)
-- the jobs as the worker holds them (the columns records.held reads), arguments as text
SELECT r.ids, x.id, x.task, x.queue, x.status, x.ref_type, x.ref_id, x.priority,
       x.args::text, x.kwargs::text, x.attempts, x.max_attempts, x.timeout, x.worker_id,
       x.lock_key, x.child_pid, x.trace_context
FROM rejected r CROSS JOIN (SELECT count(*) FROM requeued) AS woken LEFT JOIN result x ON true
ORDER BY x.part, x.rank, x.id;

-- Control of running workers and of queues -------------------------------------------

-- What a worker is asked to do, read once a second: a process count to scale to, and
-- the queues paused fleet-wide.
-- name: worker_control
SELECT w.requested_processes,
       ARRAY(SELECT q.name FROM tasktrail.queues q WHERE q.paused ORDER BY q.name)
FROM tasktrail.workers w
WHERE w.id = %(worker_id)s;

-- A worker's process count as it is now; a request for that count has been applied.
-- name: update_worker_processes
UPDATE tasktrail.workers
SET processes = %(processes)s, reserve = %(reserve)s,
    requested_processes = CASE WHEN requested_processes = %(processes)s THEN NULL
                               ELSE requested_processes END
WHERE id = %(worker_id)s
RETURNING id;

-- name: request_processes
WITH asked AS (
    UPDATE tasktrail.workers SET requested_processes = %(processes)s
    WHERE name = %(name)s AND status = 'running'
    RETURNING id
)
SELECT id, pg_notify('tasktrail', 'control') FROM asked;

-- The queues that have queued jobs, by skipping through the claim index one queue at a
-- time (a loose index scan: as many probes as queues, whatever the backlog).
-- name: queued_queues
WITH RECURSIVE found (queue) AS (
    (SELECT queue FROM tasktrail.jobs WHERE status = 'queued' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM tasktrail.jobs j
            WHERE j.status = 'queued' AND j.queue > f.queue ORDER BY j.queue LIMIT 1)
    FROM found f WHERE f.queue IS NOT NULL
)
SELECT queue FROM found WHERE queue IS NOT NULL;

-- Whether jobs are waiting to be claimed (due, queued) in the given queues (or any).
-- name: has_backlog
SELECT EXISTS (
    SELECT 1 FROM tasktrail.jobs
    WHERE status = 'queued' AND run_at <= %(now)s
      AND (%(any_queue)s OR queue = ANY (%(queues)s::text[]))
);

-- name: set_queue_paused
INSERT INTO tasktrail.queues (name, paused, changed_at, changed_by)
VALUES (%(name)s, %(paused)s, %(now)s, %(by)s)
ON CONFLICT (name) DO UPDATE
SET paused = EXCLUDED.paused, changed_at = EXCLUDED.changed_at, changed_by = EXCLUDED.changed_by
RETURNING name, pg_notify('tasktrail', 'control');

-- Every queue with active jobs or a pause record: its state and depth. Each count reads
-- one of the partial indexes of active jobs, never the finished ones.
-- name: list_queues
WITH queued AS (
    SELECT queue, count(*) AS n, min(run_at) AS oldest FROM tasktrail.jobs
    WHERE status = 'queued' GROUP BY queue
), held AS (
    SELECT queue, count(*) AS n FROM tasktrail.jobs
    WHERE status IN ('reserved', 'running') GROUP BY queue
), names AS (
    SELECT queue AS name FROM queued UNION SELECT queue FROM held
    UNION SELECT name FROM tasktrail.queues
)
SELECT n.name, coalesce(q.paused, false), q.changed_at, q.changed_by,
       coalesce(d.n, 0), coalesce(h.n, 0), d.oldest
FROM names n
LEFT JOIN tasktrail.queues q ON q.name = n.name
LEFT JOIN queued d ON d.queue = n.name
LEFT JOIN held h ON h.queue = n.name
ORDER BY n.name;
