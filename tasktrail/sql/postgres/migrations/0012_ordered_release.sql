-- Migration 12: outcomes release their lock keys in the keys' order. Two workers whose
-- outcomes ended jobs of the same two keys could each wait for the other's row of
-- job_limits (the release trigger takes them job by job): PostgreSQL failed one of the
-- exchanges as a deadlock. The exchange now locks those rows first, sorted, through this
-- function (security definer: a worker may read job_limits, not lock its rows).

-- Lock the job_limits rows of the given jobs' lock keys, in the keys' order (the
-- exchange calls it first with the jobs its outcomes end): the release of those keys,
-- row by row in the job_changed trigger, then never waits for another exchange
-- releasing the same keys in the other order (a deadlock). The exchange calls it only
-- while some key is in use. Security definer: a worker may read job_limits, not lock
-- its rows.
CREATE OR REPLACE FUNCTION tasktrail.lock_released_keys(p_job_ids bigint[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    locked integer;
BEGIN
    SELECT count(*)::integer INTO locked FROM (
        SELECT l.lock_key FROM tasktrail.job_limits l
        WHERE l.lock_key IN (SELECT j.lock_key FROM tasktrail.jobs j
                             WHERE j.id = ANY (p_job_ids) AND j.lock_key IS NOT NULL)
        ORDER BY l.lock_key
        FOR UPDATE
    ) AS keys;
    RETURN locked;
END;
$$;
