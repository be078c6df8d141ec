-- Migration 10: a job under a lock starts, in its history, no earlier than the last
-- end of a job that held its key (job_limits.freed_at). A claim's time is taken before
-- it waits for the key's row, so it could lag behind an end committed meanwhile, and
-- the history showed two holders of one lock at once for a few milliseconds. Rows of
-- keys nobody holds now stay (the next claim reads freed_at) until `maintain` deletes
-- those idle for an hour. A nullable column: no rewrite.

ALTER TABLE tasktrail.job_limits ADD COLUMN IF NOT EXISTS freed_at timestamptz;

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
