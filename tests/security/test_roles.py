"""The least-privilege PostgreSQL setup (``tasktrail/sql/postgres/roles.sql``), tested by
connecting as each role and doing what it is for, and what it must not do.

Roles are cluster-wide, so this module renders the script with role names of its own
(``tt_owner_<hex>`` …), lets them log in, and drops them when it is done. Each test gets
its own schema (``pg_dsn``), set up as documented: the script, ``tasktrail migrate`` as
the owner, the script again.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import tasktrail
from tasktrail.backends import open_backend
from tasktrail.backends.postgres.backend import COPY_FROM
from tasktrail.backends.postgres.sql import SCHEMA_VERSION
from tasktrail.clock import utcnow
from tasktrail.job import WorkerInfo

from ..integration.conftest import REPO_ROOT, WorkerFactory, tasktrail_command
from ..integration.helpers import assert_valid_histories, wait_for
from . import tasks

try:
    import psycopg

    from tasktrail.backends.postgres.sql import render_roles
except ImportError as exc:  # pragma: no cover - the postgres extra is part of dev
    if os.environ.get("CI"):
        raise
    pytest.skip(f"the postgres extra is not installed ({exc})", allow_module_level=True)

pytestmark = pytest.mark.postgres

ROLES = ("owner", "worker", "producer")
ROLES_APP = "tests.security.tasks:roles_app"


@dataclass(frozen=True)
class Roles:
    """This module's three roles, and how to run the script for a schema."""

    names: dict[str, str]
    server: str

    def script(self, schema: str) -> str:
        """roles.sql for ``schema``, with this module's role names."""
        return re.sub(
            r"\btasktrail_(owner|worker|producer)\b",
            lambda match: self.names[match.group(1)],
            render_roles(schema),
        )

    def dsn(self, role: str, schema: str) -> str:
        """The DSN of ``role`` (``owner``, ``worker``, ``producer``) for ``schema``."""
        parts = urlsplit(self.server)
        netloc = f"{self.names[role]}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc, query=f"schema={schema}").geturl()


def run_tasktrail(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``tasktrail`` command, on ``dsn``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    env["TASKTRAIL_DSN"] = dsn
    return subprocess.run(
        [tasktrail_command(), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def admin(server: str) -> psycopg.Connection[Any]:
    return psycopg.connect(server, autocommit=True)


@pytest.fixture(scope="module")
def roles(pg_server: str) -> Iterator[Roles]:
    suffix = uuid.uuid4().hex[:10]
    created = Roles({role: f"tt_{role}_{suffix}" for role in ROLES}, pg_server)
    try:
        yield created
    finally:
        names = ", ".join(f'"{name}"' for name in created.names.values())
        with admin(pg_server) as conn:
            existing = conn.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname = ANY (%s)",
                (list(created.names.values()),),
            ).fetchone()
            if existing and existing[0]:
                conn.execute(f"DROP OWNED BY {names} CASCADE".encode())
                conn.execute(f"DROP ROLE IF EXISTS {names}".encode())


@dataclass(frozen=True)
class Setup:
    """A schema set up with the roles, and a DSN for each."""

    schema: str
    owner: str
    worker: str
    producer: str


def run_script(server: str, script: str) -> list[str]:
    """Run a script as the superuser (as a DBA runs it with psql); return its notices."""
    notices: list[str] = []
    with admin(server) as conn:
        conn.add_notice_handler(lambda notice: notices.append(str(notice.message_primary)))
        conn.execute(script.encode())
    return notices


@pytest.fixture(scope="module")
def setup(roles: Roles, pg_server: str) -> Iterator[Setup]:
    """The documented setup in a new schema: script, migrate as the owner, script again.

    The module's tests share it (each uses its own refs and queues); the owner test and
    the script test make schemas of their own.
    """
    schema = f"tt_test_{uuid.uuid4().hex[:12]}"
    try:
        yield _set_up(roles, pg_server, schema)
    finally:
        with admin(pg_server) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


def _set_up(roles: Roles, pg_server: str, schema: str) -> Setup:
    notices = run_script(pg_server, roles.script(schema))
    assert any("not there yet" in notice for notice in notices), notices
    with admin(pg_server) as conn:
        for name in roles.names.values():  # created NOLOGIN: the test logs in as them
            conn.execute(f'ALTER ROLE "{name}" LOGIN'.encode())
    owner = roles.dsn("owner", schema)
    backend = open_backend(owner)
    try:
        assert backend.migrate() == list(range(1, SCHEMA_VERSION + 1))
    finally:
        backend.close()
    notices = run_script(pg_server, roles.script(schema))
    assert not any("not there yet" in notice for notice in notices), notices
    return Setup(
        schema=schema,
        owner=owner,
        worker=roles.dsn("worker", schema),
        producer=roles.dsn("producer", schema),
    )


def privileges(server: str, schema: str, role: str) -> dict[str, set[str]]:
    """What ``role`` may do to each table and view of ``schema``, and which of its
    functions it may execute."""
    found: dict[str, set[str]] = {}
    with admin(server) as conn:
        for table, privilege in conn.execute(
            "SELECT c.relname, p.privilege FROM pg_class c"
            " CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',"
            "   'REFERENCES', 'TRIGGER']) AS p (privilege)"
            " WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'v')"
            "   AND has_table_privilege(%s, c.oid, p.privilege)",
            (f'"{schema}"', role),
        ):
            found.setdefault(table, set()).add(privilege)
        for (function,) in conn.execute(
            "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = %s::regnamespace"
            " AND has_function_privilege(%s, p.oid, 'EXECUTE')",
            (f'"{schema}"', role),
        ):
            found.setdefault(f"{function}()", set()).add("EXECUTE")
        for sequence, privilege in conn.execute(
            "SELECT c.relname, p.privilege FROM pg_class c"
            " CROSS JOIN unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS p (privilege)"
            " WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'S'"
            "   AND has_sequence_privilege(%s, c.oid, p.privilege)",
            (f'"{schema}"', role),
        ):
            found.setdefault(sequence, set()).add(privilege)
        for privilege in ("USAGE", "CREATE"):
            if conn.execute(
                "SELECT has_schema_privilege(%s, %s, %s)", (role, schema, privilege)
            ).fetchone() == (True,):
                found.setdefault("schema", set()).add(privilege)
    return found


READ = {"SELECT"}
VIEWS = {"job_history": READ, "latest_by_ref": READ, "task_hourly": READ}
EXPECTED = {
    "producer": {
        "schema": {"USAGE"},
        "jobs": {"SELECT", "INSERT"},
        "jobs_id_seq": {"USAGE"},  # ids for a big enqueue_many (COPY)
        "events": {"SELECT", "INSERT"},
        "schedules": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "schedule_ticks": READ,
        "workers": READ,
        "queues": READ,
        "migrations": READ,
        "job_after": READ,
        "job_limits": READ,
        "job_starts": READ,
        **VIEWS,
        # enqueue with after= (security definer: it writes as the owner)
        "wait_for_jobs()": {"EXECUTE"},
    },
    "worker": {
        "schema": {"USAGE"},
        "jobs": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "jobs_id_seq": {"USAGE"},
        "events": {"SELECT", "INSERT", "DELETE"},
        "schedules": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        # maintain prunes the ledger and stopped workers with the jobs
        "schedule_ticks": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "workers": {"SELECT", "INSERT", "UPDATE", "DELETE"},
        "queues": {"SELECT", "INSERT", "UPDATE"},  # tasktrail queues pause / resume
        "migrations": READ,
        **VIEWS,
        "job_after": {"SELECT", "DELETE"},  # maintain prunes it with the jobs
        "job_limits": {"SELECT", "DELETE"},  # maintain lets go of keys idle for an hour
        "job_starts": READ,
        "claimable_jobs()": {"EXECUTE"},
        "take_back_jobs()": {"EXECUTE"},
        "wait_for_jobs()": {"EXECUTE"},
        "lock_released_keys()": {"EXECUTE"},  # an exchange's outcomes lock their keys
    },
}


def test_each_role_holds_exactly_what_the_script_grants(
    setup: Setup, roles: Roles, pg_server: str
) -> None:
    for role, expected in EXPECTED.items():
        assert privileges(pg_server, setup.schema, roles.names[role]) == expected, role
    # PUBLIC (every other role of the cluster) gets nothing at all.
    assert privileges(pg_server, setup.schema, "public") == {}
    # The owner owns everything in the schema, and the schema.
    with admin(pg_server) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relnamespace = %(s)s::regnamespace"
            " UNION SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc"
            " WHERE pronamespace = %(s)s::regnamespace"
            " UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE oid = %(s)s::regnamespace",
            {"s": f'"{setup.schema}"'},
        ).fetchall()
    assert owners == [(roles.names["owner"],)]
    # Running the script again changes nothing.
    run_script(pg_server, roles.script(setup.schema))
    for role, expected in EXPECTED.items():
        assert privileges(pg_server, setup.schema, roles.names[role]) == expected, role


def test_the_script_creates_roles_that_cannot_log_in(pg_server: str) -> None:
    suffix = uuid.uuid4().hex[:10]
    names = {role: f"tt_{role}_{suffix}" for role in ROLES}
    schema = f"tt_test_{suffix}"
    script = re.sub(
        r"\btasktrail_(owner|worker|producer)\b", lambda m: names[m.group(1)], render_roles(schema)
    )
    try:
        run_script(pg_server, script)
        run_script(pg_server, script)  # idempotent: the roles exist, nothing fails
        with admin(pg_server) as conn:
            found = conn.execute(
                "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb"
                " FROM pg_roles WHERE rolname = ANY (%s) ORDER BY rolname",
                (list(names.values()),),
            ).fetchall()
        assert found == sorted((name, False, False, False, False) for name in names.values())
        parts = urlsplit(pg_server)
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            psycopg.connect(
                parts._replace(
                    netloc=f"{names['worker']}@{parts.netloc.rpartition('@')[2]}"
                ).geturl()
            )
    finally:
        quoted = ", ".join(f'"{name}"' for name in names.values())
        with admin(pg_server) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
            conn.execute(f"DROP OWNED BY {quoted} CASCADE".encode())
            conn.execute(f"DROP ROLE {quoted}".encode())


# -- the producer ------------------------------------------------------------------------------


def test_a_producer_enqueues_and_reads(setup: Setup) -> None:
    tasks.roles_app.configure(setup.producer)
    app = tasks.roles_app
    try:
        handle = tasks.double.enqueue(21, ref=("number", "21"))
        first = tasks.unique_by_ref.enqueue(ref=("number", "1"))
        again = tasks.unique_by_ref.enqueue(ref=("number", "1"))
        assert (again.id, again.created) == (first.id, False)
        with psycopg.connect(urlsplit(setup.producer)._replace(query="").geturl()) as conn:
            inside = tasks.double.enqueue(1, connection=conn)  # in the producer's transaction
        assert app.job(inside.id).status == "queued"
        # A big batch goes by COPY, with ids from the jobs' sequence.
        many = app.enqueue_many(tasks.double.prepare(n) for n in range(COPY_FROM))
        assert [app.job(h.id).args for h in (many[0], many[-1])] == [[0], [COPY_FROM - 1]]
        assert app.job(handle.id).args == [21]
        assert [event.kind for event in app.events(handle.id)] == ["enqueued"]
        assert {job.id for job in app.jobs(ref="number:21")} == {handle.id}
        assert app.stats()[0].counts["queued"] >= 1
        assert isinstance(app.workers(include_stopped=True), list)
        # Producers manage run-time schedules (docs/security.md says why).
        app.schedules.add("by-producer", tasks.double, every=3600, args=[1])
        app.schedules.pause("by-producer")
        assert app.schedules.ticks("by-producer") == []
        app.schedules.remove("by-producer")
    finally:
        app.close()
    for args in (("jobs", "--json"), ("show", str(handle.id)), ("stats",), ("workers", "--all")):
        done = run_tasktrail(setup.producer, *args)
        assert done.returncode == 0, (args, done.stderr)


PRODUCER_MAY_NOT = [
    "UPDATE {s}.jobs SET status = 'running'",
    "UPDATE {s}.jobs SET args = '[1]'",
    "DELETE FROM {s}.jobs",
    "TRUNCATE {s}.jobs",
    "UPDATE {s}.events SET kind = 'succeeded'",
    "DELETE FROM {s}.events",
    "INSERT INTO {s}.workers (name, host, pid, processes, reserve, lease_seconds, started_at,"
    " heartbeat_at, expires_at) VALUES ('fake', 'h', 1, 1, 1, 30, now(), now(), now())",
    "UPDATE {s}.workers SET status = 'lost'",
    "INSERT INTO {s}.schedule_ticks VALUES ('x', now(), 'fired', NULL, NULL, now(), NULL)",
    "INSERT INTO {s}.migrations (version, name) VALUES (99, 'from the future')",
    "SELECT * FROM {s}.claimable_jobs(now(), 10, NULL)",
    "SELECT * FROM {s}.take_back_jobs(ARRAY[1]::bigint[], now(), 'lost')",
    "SELECT {s}.notify_jobs()",
    "DROP TABLE {s}.jobs",
    "DROP VIEW {s}.job_history",
    "DROP FUNCTION {s}.claimable_jobs",
    "DROP SCHEMA {s} CASCADE",
    "ALTER TABLE {s}.jobs ADD COLUMN evil text",
    "ALTER TABLE {s}.jobs DISABLE TRIGGER jobs_notify",
    "CREATE TABLE {s}.evil (id int)",
    "CREATE FUNCTION {s}.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE INDEX evil ON {s}.jobs (task)",
    "SELECT * FROM {s}.jobs FOR UPDATE",
]
WORKER_MAY_NOT = [
    statement
    for statement in PRODUCER_MAY_NOT
    if not statement.startswith(
        (
            "UPDATE {s}.jobs",
            "DELETE FROM {s}.jobs",
            "DELETE FROM {s}.events",
            "INSERT INTO {s}.workers",
        )
    )
    and not statement.startswith(("UPDATE {s}.workers", "INSERT INTO {s}.schedule_ticks"))
    and "claimable_jobs(" not in statement
    and "take_back_jobs(" not in statement
    and "FOR UPDATE" not in statement
]


def refused(dsn: str, statements: list[str], schema: str) -> dict[str, str]:
    """Run each statement as the role of ``dsn``; return the ones that were not refused."""
    allowed: dict[str, str] = {}
    with psycopg.connect(urlsplit(dsn)._replace(query="").geturl(), autocommit=True) as conn:
        for template in statements:
            statement = template.format(s=f'"{schema}"')
            try:
                conn.execute(statement.encode())
            except psycopg.errors.InsufficientPrivilege:
                continue
            allowed[statement] = "ran"
    return allowed


def test_a_producer_cannot_claim_change_or_delete_jobs_nor_touch_the_schema(
    setup: Setup, pg_server: str
) -> None:
    tasks.roles_app.configure(setup.producer)
    try:
        handle = tasks.double.enqueue(2)
    finally:
        tasks.roles_app.close()
    before = table_rows(pg_server, setup.schema)
    assert refused(setup.producer, PRODUCER_MAY_NOT, setup.schema) == {}
    with psycopg.connect(urlsplit(setup.producer)._replace(query="").geturl()) as conn:
        conn.execute(f'GRANT UPDATE ON "{setup.schema}".jobs TO PUBLIC'.encode())  # a warning
    assert privileges(pg_server, setup.schema, "public") == {}
    # Through tasktrail's own API too: claiming, finishing, cancelling, retrying,
    # registering as a worker, recovering, pruning, migrating are all refused.
    backend = open_backend(setup.producer)
    try:
        now = utcnow()
        attempts: dict[str, Callable[[], object]] = {
            "reserve": lambda: backend.reserve(1, (), 10, now=now),
            "cancel": lambda: backend.cancel(handle.id, now=now, by="producer"),
            "register": lambda: backend.register_worker(
                WorkerInfo("fake", "h", 1, 1, 1, (), 30.0), now=now
            ),
            "prune": lambda: backend.prune(older_than={"queued": timedelta(0)}, now=now),
            "migrate": backend.migrate,
        }
        for name, attempt in attempts.items():
            with pytest.raises(Exception, match="permission denied") as raised:
                attempt()
            assert "s3cret" not in str(raised.value), name
    finally:
        backend.close()
    assert table_rows(pg_server, setup.schema) == before


def table_rows(server: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    with admin(server) as conn:
        return {
            table: conn.execute(
                f'SELECT * FROM "{schema}".{table} ORDER BY 1'.encode()  # noqa: S608
            ).fetchall()
            for table in ("jobs", "events", "workers", "schedules", "schedule_ticks", "migrations")
        }


# -- the worker --------------------------------------------------------------------------------


def test_a_worker_role_runs_jobs_end_to_end(setup: Setup, tmp_path: Path) -> None:
    # Jobs come from the producer, are run by a real `tasktrail worker` logged in as the
    # worker role (with retries, and a periodic schedule firing), then maintained.
    tasks.roles_app.configure(setup.producer)
    try:
        doubled = tasks.double.enqueue(21)
        flaky = tasks.flaky.enqueue("second time lucky")
        # fan-in and concurrency limits work through their security-definer functions
        after = tasks.double.enqueue(4, after=[doubled, flaky])
        limited = [tasks.limited.enqueue(n) for n in range(3)]
    finally:
        tasks.roles_app.close()

    factory = WorkerFactory(setup.worker, tmp_path)
    try:
        worker = factory.start(app_spec=ROLES_APP)
        tasks.roles_app.configure(setup.worker)
        app = tasks.roles_app
        assert doubled.wait(timeout=30).result == 42, worker.diagnose()
        assert flaky.wait(timeout=30).result == "second time lucky", worker.diagnose()
        assert app.job(flaky.id).attempts == 2
        assert after.wait(timeout=30).result == 8, worker.diagnose()
        assert [h.wait(timeout=30).result for h in limited] == [0, 1, 2], worker.diagnose()
        wait_for(
            lambda: app.jobs(task="tests.security.tasks.periodic_tick", status="succeeded"),
            "the periodic job to fire and run",
            diagnose=worker.diagnose,
        )
        # An operator using the worker role may cancel and retry.
        later = tasks.double.enqueue(1, delay=3600)
        assert app.cancel(later.id).status == "cancelled"
        assert app.retry(later.id).status == "queued"
        worker.signal(15)
        assert worker.wait() == 0, worker.diagnose()
        assert "permission denied" not in worker.log()
        assert_valid_histories(app)
    finally:
        factory.kill_all()
        tasks.roles_app.close()

    done = run_tasktrail(setup.worker, "maintain", "--keep-succeeded", "0s", "--json")
    assert done.returncode == 0, done.stderr
    assert '"pruned_jobs"' in done.stdout


def test_a_worker_role_recovers_the_jobs_of_a_lost_worker(setup: Setup) -> None:
    # Lease recovery (take_back_jobs) under the worker role's privileges.
    tasks.roles_app.configure(setup.producer)
    try:
        held = tasks.double.enqueue(5, queue="recovery")
    finally:
        tasks.roles_app.close()
    backend = open_backend(setup.worker)
    try:
        now = utcnow()
        lost = backend.register_worker(WorkerInfo("gone", "h", 1, 1, 1, (), 1.0), now=now)
        [reserved] = backend.reserve(lost, ("recovery",), 1, now=now)
        assert reserved.id == held.id
        recovered = backend.recover_lost(now=now + timedelta(seconds=5))
        assert [(r.job_id, r.previous_status, r.new_status) for r in recovered] == [
            (held.id, "reserved", "queued")
        ]
    finally:
        backend.close()


def test_a_worker_cannot_change_the_schema(setup: Setup, pg_server: str) -> None:
    before = table_rows(pg_server, setup.schema)
    assert refused(setup.worker, WORKER_MAY_NOT, setup.schema) == {}
    assert table_rows(pg_server, setup.schema) == before
    backend = open_backend(setup.worker)
    try:
        with pytest.raises(Exception, match="permission denied"):
            backend.migrate()
    finally:
        backend.close()


# -- the owner ---------------------------------------------------------------------------------


def test_the_owner_migrates_and_adopts_a_schema_made_by_someone_else(
    roles: Roles, pg_dsn: str, pg_server: str
) -> None:
    # The schema was set up by a superuser (tasktrail migrate, or psql -f schema.sql)
    # before the roles existed: the script hands it to the owner.
    tasktrail.App(pg_dsn).backend.close()
    schema = urlsplit(pg_dsn).query.partition("schema=")[2]
    run_script(pg_server, roles.script(schema))
    with admin(pg_server) as conn:
        for name in roles.names.values():
            conn.execute(f'ALTER ROLE "{name}" LOGIN'.encode())
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relnamespace = %s::regnamespace",
            (f'"{schema}"',),
        ).fetchall()
    assert owners == [(roles.names["owner"],)]
    for role, expected in EXPECTED.items():
        assert privileges(pg_server, schema, roles.names[role]) == expected, role
    done = run_tasktrail(roles.dsn("owner", schema), "migrate")
    assert done.returncode == 0, done.stderr
    assert "is up to date" in done.stdout
    # A new object the owner creates later is readable by both, executable by workers only.
    with psycopg.connect(urlsplit(roles.dsn("owner", schema))._replace(query="").geturl()) as conn:
        conn.execute(f'CREATE TABLE "{schema}".added_later (id int)'.encode())
        conn.execute(
            f'CREATE FUNCTION "{schema}".added_later_fn() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$'.encode()
        )
    assert privileges(pg_server, schema, roles.names["producer"])["added_later"] == READ
    assert privileges(pg_server, schema, roles.names["worker"])["added_later"] == READ
    assert "added_later_fn()" in privileges(pg_server, schema, roles.names["worker"])
    assert "added_later_fn()" not in privileges(pg_server, schema, roles.names["producer"])
    assert "added_later_fn()" not in privileges(pg_server, schema, "public")


def test_login_roles_act_through_membership(roles: Roles, pg_server: str) -> None:
    # The documented alternative to letting the three roles log in: your own login roles
    # are members; the deployer takes the owner role for the session (options=-c role=…),
    # so that what `tasktrail migrate` creates belongs to the owner, not to the deployer.
    suffix = uuid.uuid4().hex[:10]
    deployer, web = f"tt_deployer_{suffix}", f"tt_web_{suffix}"
    schema = f"tt_test_{suffix}"
    run_script(pg_server, roles.script(schema))  # creates the roles if they are missing
    with admin(pg_server) as conn:
        conn.execute(f'CREATE ROLE "{deployer}" LOGIN IN ROLE "{roles.names["owner"]}"'.encode())
        conn.execute(f'CREATE ROLE "{web}" LOGIN IN ROLE "{roles.names["producer"]}"'.encode())
    try:
        parts = urlsplit(roles.dsn("owner", schema))
        host = parts.netloc.rpartition("@")[2]
        as_owner = parts._replace(
            netloc=f"{deployer}@{host}",
            query=f"options=-c%20role%3D{roles.names['owner']}&schema={schema}",
        ).geturl()
        done = run_tasktrail(as_owner, "migrate")
        assert done.returncode == 0, done.stderr
        run_script(pg_server, roles.script(schema))
        with admin(pg_server) as conn:
            owners = conn.execute(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
                " WHERE relnamespace = %s::regnamespace",
                (f'"{schema}"',),
            ).fetchall()
        assert owners == [(roles.names["owner"],)]
        app = tasktrail.App(parts._replace(netloc=f"{web}@{host}").geturl())
        try:

            @app.task(name="double")
            def double(number: int) -> int:
                return 2 * number

            assert app.job(double.enqueue(4).id).status == "queued"
            with pytest.raises(
                tasktrail.PermissionDenied, match="permission denied for table jobs"
            ):
                app.cancel(app.jobs()[0].id)
        finally:
            app.close()
    finally:
        with admin(pg_server) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())
            conn.execute(f'DROP ROLE "{deployer}", "{web}"'.encode())


# -- what the product should do better (see the report of issue 6) ----------------------------


def test_migrate_as_a_worker_is_one_clear_line(setup: Setup) -> None:
    done = run_tasktrail(setup.worker, "migrate")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_refused_cancel_is_a_tasktrail_error(setup: Setup) -> None:
    tasks.roles_app.configure(setup.producer)
    try:
        handle = tasks.double.enqueue(3)
        with pytest.raises(Exception) as raised:
            tasks.roles_app.cancel(handle.id)
        assert isinstance(raised.value, tasktrail.TasktrailError), repr(raised.value)
    finally:
        tasks.roles_app.close()


def test_a_role_without_grants_gets_a_schema_error(setup: Setup, pg_server: str) -> None:
    nobody = f"tt_nobody_{uuid.uuid4().hex[:10]}"
    with admin(pg_server) as conn:
        conn.execute(f'CREATE ROLE "{nobody}" LOGIN'.encode())
    parts = urlsplit(setup.producer)
    dsn = parts._replace(netloc=f"{nobody}@{parts.netloc.rpartition('@')[2]}").geturl()
    try:
        with pytest.raises(Exception) as raised:
            tasktrail.App(dsn).backend  # noqa: B018
        assert isinstance(raised.value, tasktrail.SchemaError), repr(raised.value)
    finally:
        with admin(pg_server) as conn:
            conn.execute(f'DROP ROLE "{nobody}"'.encode())


def test_the_schema_command_prints_the_roles_script_for_the_dsns_schema(pg_server: str) -> None:
    from click.testing import CliRunner

    from tasktrail.backends.postgres.sql import render_roles
    from tasktrail.cli import cli

    runner = CliRunner()
    dsn = "postgresql://nobody@127.0.0.1:1/nowhere"  # nothing is connected to
    done = runner.invoke(cli, ["schema", "--roles", "--dsn", dsn, "--schema", "shop_jobs"])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == render_roles("shop_jobs").strip()
    assert '"shop_jobs"' in done.output and "GRANT" in done.output
    refused = runner.invoke(cli, ["schema", "--roles", "--dsn", "sqlite:///x.db"])
    assert refused.exit_code == 1
    assert "--roles is for PostgreSQL" in refused.output
