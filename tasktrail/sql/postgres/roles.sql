-- tasktrail least-privilege roles for PostgreSQL.
--
-- Three roles, each with only what its programs need (docs/security.md):
--
--   tasktrail_owner     owns the schema `tasktrail` and every object in it: runs
--                       `tasktrail migrate`. Nothing else needs to own or create anything.
--   tasktrail_worker    what `tasktrail worker` and `tasktrail maintain` need: claim, run,
--                       finish and prune jobs, register workers, fire schedules; also what
--                       operators use for `tasktrail cancel`, `retry` and `schedules`.
--                       No DDL; history (events) can be added and pruned, never rewritten.
--   tasktrail_producer  what an application that enqueues needs: read everything, insert
--                       jobs and their `enqueued` events, and manage run-time schedules
--                       (app.schedules). It cannot claim, change, cancel or delete jobs,
--                       write the worker registry or the tick ledger, or change the schema.
--
-- Run it as a superuser (or a role with CREATEROLE that may create the schema), with
-- `psql -d DBNAME -f roles.sql`, after the schema exists (`tasktrail schema | psql` or
-- `tasktrail migrate`), and again after each upgrade: it is idempotent. Run before the
-- schema exists, it creates the schema, empty and owned by tasktrail_owner, so that
-- tasktrail_owner runs the first `tasktrail migrate`; then run it again.
--
-- The roles are created NOLOGIN: give them to your login roles (GRANT tasktrail_worker
-- TO app_worker), or let them log in (ALTER ROLE tasktrail_worker LOGIN PASSWORD '…').
-- They are cluster-wide: for several tasktrail schemas with separate roles, rename the
-- roles in this file. The word `tasktrail` alone names the schema, as in schema.sql.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tasktrail_owner') THEN
        CREATE ROLE tasktrail_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tasktrail_worker') THEN
        CREATE ROLE tasktrail_worker NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tasktrail_producer') THEN
        CREATE ROLE tasktrail_producer NOLOGIN;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS tasktrail AUTHORIZATION tasktrail_owner;
ALTER SCHEMA tasktrail OWNER TO tasktrail_owner;

-- Objects created earlier by another role (schema.sql run by a superuser, say) are handed
-- to the owner, so that it can migrate them. Identity sequences and indexes follow their
-- tables.
DO $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT c.oid::regclass AS name FROM pg_class c
        WHERE c.relnamespace = 'tasktrail'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
          AND c.relowner <> 'tasktrail_owner'::regrole
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO tasktrail_owner', item.name);
    END LOOP;
    FOR item IN
        SELECT p.oid::regprocedure AS name FROM pg_proc p
        WHERE p.pronamespace = 'tasktrail'::regnamespace
          AND p.proowner <> 'tasktrail_owner'::regrole
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO tasktrail_owner', item.name);
    END LOOP;
END
$$;

-- Nobody else gets anything: not on the schema, not on its functions (which PostgreSQL
-- lets PUBLIC execute unless told otherwise). What the two roles had before is taken
-- back too, so that after this script they hold exactly what is granted below (run the
-- script in one transaction, `psql -1`, so that nobody sees it half done).
REVOKE ALL ON SCHEMA tasktrail FROM PUBLIC, tasktrail_worker, tasktrail_producer;
REVOKE ALL ON ALL TABLES IN SCHEMA tasktrail FROM PUBLIC, tasktrail_worker, tasktrail_producer;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA tasktrail
    FROM PUBLIC, tasktrail_worker, tasktrail_producer;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tasktrail
    FROM PUBLIC, tasktrail_worker, tasktrail_producer;
GRANT USAGE ON SCHEMA tasktrail TO tasktrail_worker, tasktrail_producer;

-- Both read everything: tables and the reporting views.
GRANT SELECT ON ALL TABLES IN SCHEMA tasktrail TO tasktrail_worker, tasktrail_producer;

-- Per table: which changes each role may make. Tables that do not exist yet (the script
-- runs before the first migration) are skipped with a notice; run the script again.
DO $$
DECLARE
    grant_line text;
    missing text[] := '{}';
BEGIN
    FOREACH grant_line IN ARRAY ARRAY[
        'INSERT, UPDATE, DELETE ON tasktrail.jobs TO tasktrail_worker',
        'INSERT, DELETE ON tasktrail.events TO tasktrail_worker',
        'INSERT, UPDATE, DELETE ON tasktrail.workers TO tasktrail_worker',
        'INSERT, UPDATE, DELETE ON tasktrail.schedules TO tasktrail_worker',
        'INSERT, UPDATE, DELETE ON tasktrail.schedule_ticks TO tasktrail_worker',
        'INSERT, UPDATE ON tasktrail.queues TO tasktrail_worker',
        'INSERT ON tasktrail.jobs TO tasktrail_producer',
        'INSERT ON tasktrail.events TO tasktrail_producer',
        'INSERT, UPDATE, DELETE ON tasktrail.schedules TO tasktrail_producer',
        'DELETE ON tasktrail.job_after TO tasktrail_worker',
        'DELETE ON tasktrail.job_limits TO tasktrail_worker'
    ] LOOP
        IF to_regclass(substring(grant_line FROM ' ON ([^ ]+) ')) IS NULL THEN
            missing := missing || substring(grant_line FROM ' ON ([^ ]+) ');
        ELSE
            EXECUTE 'GRANT ' || grant_line;
        END IF;
    END LOOP;
    -- a big app.enqueue_many takes its ids from the jobs' identity sequence (nextval)
    IF to_regclass('tasktrail.jobs') IS NOT NULL THEN
        EXECUTE format('GRANT USAGE ON SEQUENCE %s TO tasktrail_worker, tasktrail_producer',
                       pg_get_serial_sequence('tasktrail.jobs', 'id'));
    END IF;
    IF to_regprocedure('tasktrail.claimable_jobs(timestamptz, integer, text[])') IS NULL THEN
        missing := missing || 'tasktrail.claimable_jobs'::text;
    ELSE
        GRANT EXECUTE ON FUNCTION tasktrail.claimable_jobs(timestamptz, integer, text[])
            TO tasktrail_worker;
    END IF;
    IF to_regprocedure('tasktrail.take_back_jobs(bigint[], timestamptz, text)') IS NULL THEN
        missing := missing || 'tasktrail.take_back_jobs'::text;
    ELSE
        GRANT EXECUTE ON FUNCTION tasktrail.take_back_jobs(bigint[], timestamptz, text)
            TO tasktrail_worker;
    END IF;
    IF to_regprocedure('tasktrail.lock_released_keys(bigint[])') IS NULL THEN
        missing := missing || 'tasktrail.lock_released_keys'::text;
    ELSE
        GRANT EXECUTE ON FUNCTION tasktrail.lock_released_keys(bigint[]) TO tasktrail_worker;
    END IF;
    -- enqueue with after=: it writes what it needs as the schema's owner (security definer)
    IF to_regprocedure('tasktrail.wait_for_jobs(json, timestamptz)') IS NULL THEN
        missing := missing || 'tasktrail.wait_for_jobs'::text;
    ELSE
        GRANT EXECUTE ON FUNCTION tasktrail.wait_for_jobs(json, timestamptz)
            TO tasktrail_worker, tasktrail_producer;
    END IF;
    IF cardinality(missing) > 0 THEN
        RAISE NOTICE 'not there yet, so not granted: %; migrate as tasktrail_owner, then run this script again',
            array_to_string(ARRAY(SELECT DISTINCT m FROM unnest(missing) AS m ORDER BY m), ', ');
    END IF;
END
$$;

-- Objects the owner creates later (a migration of a newer tasktrail) are readable by both
-- roles and their functions executable by workers only; what the roles may change in a
-- new table is granted by running this script again after `tasktrail migrate`.
ALTER DEFAULT PRIVILEGES FOR ROLE tasktrail_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE tasktrail_owner IN SCHEMA tasktrail
    GRANT SELECT ON TABLES TO tasktrail_worker, tasktrail_producer;
ALTER DEFAULT PRIVILEGES FOR ROLE tasktrail_owner IN SCHEMA tasktrail
    GRANT EXECUTE ON FUNCTIONS TO tasktrail_worker;
