-- Migration 7: fan-in. A job enqueued with `after=` waits (status `waiting`) until every
-- job it names has ended, then it is queued, or cancelled when one of them did not
-- succeed and its policy asks for success. Done by the database, in the transaction of
-- each of those jobs' final change (the trigger jobs_release_dependents): a counter of
-- open dependencies per waiting job, no polling.
--
-- Cost on a big table: the new status check reads the table once under its lock, and
-- the unique-key index is rebuilt to cover waiting jobs (a partial index over active
-- jobs with a key: small). The new columns have no default or a constant one: no rewrite.

ALTER TABLE tasktrail.jobs
    ADD COLUMN IF NOT EXISTS waiting_for integer,       -- jobs it still waits for
    ADD COLUMN IF NOT EXISTS after_policy text,         -- succeeded | finished
    ADD COLUMN IF NOT EXISTS dependents integer NOT NULL DEFAULT 0,  -- jobs waiting on it
    ADD COLUMN IF NOT EXISTS after_ended_at timestamptz;  -- the latest end of those so far

ALTER TABLE tasktrail.jobs DROP CONSTRAINT IF EXISTS jobs_status_check;
ALTER TABLE tasktrail.jobs ADD CONSTRAINT jobs_status_check CHECK (
    status IN ('waiting', 'queued', 'reserved', 'running', 'succeeded', 'failed', 'cancelled'));
ALTER TABLE tasktrail.jobs DROP CONSTRAINT IF EXISTS jobs_after_policy_check;
ALTER TABLE tasktrail.jobs ADD CONSTRAINT jobs_after_policy_check CHECK (
    after_policy IN ('succeeded', 'finished'));

DROP INDEX IF EXISTS tasktrail.jobs_unique_active;
CREATE UNIQUE INDEX jobs_unique_active ON tasktrail.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('waiting', 'queued', 'reserved', 'running');

-- One row per (waiting job, job it waits for); after_status is that job's final status
-- once it has ended (NULL while it has not), so each dependency is counted down once.
CREATE TABLE IF NOT EXISTS tasktrail.job_after (
    job_id        bigint NOT NULL,
    after_id      bigint NOT NULL,
    after_status  text,
    PRIMARY KEY (after_id, job_id)
);
CREATE INDEX IF NOT EXISTS job_after_job ON tasktrail.job_after (job_id);

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

-- A job that has ended (now, or before a job waiting for it was enqueued) counts down
-- the jobs waiting for it: one whose last dependency this was is queued (`ready`, from
-- then on in line), one whose policy asks for success is cancelled at once if this job
-- did not succeed (`cancelled`, naming it), which in turn releases its own dependents.
CREATE OR REPLACE FUNCTION tasktrail.release_dependents() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    woken integer;
BEGIN
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
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS jobs_release_dependents ON tasktrail.jobs;
CREATE TRIGGER jobs_release_dependents AFTER UPDATE OF status, dependents ON tasktrail.jobs
    FOR EACH ROW
    WHEN (NEW.dependents > 0 AND NEW.status IN ('succeeded', 'failed', 'cancelled')
          AND (OLD.status NOT IN ('succeeded', 'failed', 'cancelled')
               OR NEW.dependents <> OLD.dependents))
    EXECUTE FUNCTION tasktrail.release_dependents();
