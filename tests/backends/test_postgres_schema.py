"""The PostgreSQL schema: setup script, migrations, the CLI that ships them, schema names.

The setup script a DBA runs (``tasktrail schema`` | ``psql -f``) and the versioned
migrations (``tasktrail migrate``) must build the same database. That is checked by
comparing the two catalogs object by object (columns, constraints, indexes, triggers,
functions, views, storage options, ...), and the comparison itself is checked by showing
it notices each kind of drift.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tasktrail import App, ConfigurationError
from tasktrail.config import PostgresDsn, parse_dsn

try:  # the postgres extra may not be installed: skip (fail under CI) like pg_server does
    import psycopg
    from psycopg import sql

    from tasktrail.backends.postgres import PostgresBackend, migrations, render_schema
    from tasktrail.backends.postgres.sql import render
except ImportError as exc:
    if os.environ.get("CI"):
        raise
    pytest.skip(f"the postgres extra is not installed ({exc})", allow_module_level=True)

pytestmark = pytest.mark.postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 30.0  # generous: a passing run never waits this long

Catalog = dict[str, dict[str, str]]


# -- helpers ------------------------------------------------------------------------------


def with_schema(base_dsn: str, schema: str) -> str:
    return f"{base_dsn}{'&' if '?' in base_dsn else '?'}schema={schema}"


def tasktrail_command() -> str:
    beside = Path(sys.executable).parent / "tasktrail"
    if beside.exists():
        return str(beside)
    found = shutil.which("tasktrail")
    if found is None:
        pytest.fail("the tasktrail command is not installed (pip install -e .)")
    return found


def cli_env() -> dict[str, str]:
    """The environment without any TASKTRAIL_* setting of the person running the tests."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tasktrail_command(), *args],
        cwd=REPO_ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def new_schema(pg_server: str) -> Iterator[Callable[[], str]]:
    """Makes fresh schema names; every schema made is dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"tt_test_{uuid.uuid4().hex[:12]}"
        made.append(name)
        return name

    yield make
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def psql() -> str:
    """The psql client, as a DBA would use it."""
    found = shutil.which("psql")
    if found is None:
        message = "psql is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so the PostgreSQL tests must run", pytrace=False)
        pytest.skip(message)
    return found


def run_psql(
    psql: str, base_dsn: str, *scripts: Path, single_transaction: bool = False
) -> subprocess.CompletedProcess[str]:
    """``psql -f`` each script in turn, stopping at the first error."""
    argv = [psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    if single_transaction:
        argv.append("-1")
    for script in scripts:
        argv += ["-f", str(script)]
    argv.append(base_dsn)
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, env=cli_env()
    )


def build_from_script(psql: str, base_dsn: str, schema: str, directory: Path) -> None:
    script = directory / f"{schema}.sql"
    script.write_text(render_schema(schema))
    result = run_psql(psql, base_dsn, script)
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr, result.stderr


def all_versions(first: int = 1) -> str:
    """The versions shipped from ``first`` on, as ``tasktrail migrate`` lists them."""
    return ", ".join(str(version) for version, _ in migrations() if version >= first)


def build_from_migrations(base_dsn: str, schema: str) -> list[int]:
    parsed = parse_dsn(with_schema(base_dsn, schema))
    assert isinstance(parsed, PostgresDsn)
    backend = PostgresBackend(parsed)
    try:
        return backend.migrate()
    finally:
        backend.close()


# -- the catalog comparison -------------------------------------------------------------

# Each query lists one kind of object in the schema given as %(schema)s, as
# (key, description) rows; the schema name is normalised out of both afterwards.
_CATALOG_QUERIES: dict[str, str] = {
    "relation": """
        SELECT c.relname,
               concat_ws(' ', 'kind=' || c.relkind::text, 'persistence=' || c.relpersistence::text,
                         'options=' || coalesce(array_to_string(
                             ARRAY(SELECT o FROM unnest(c.reloptions) o ORDER BY o), ','), ''),
                         'rls=' || c.relrowsecurity, 'replident=' || c.relreplident::text,
                         'partkey=' || CASE WHEN c.relkind = 'p'
                                            THEN pg_get_partkeydef(c.oid) END,
                         'acl=' || coalesce(c.relacl::text, ''))
        FROM pg_class c
        WHERE c.relnamespace = %(schema)s::regnamespace""",
    "column": """
        SELECT c.relname || '.' || a.attname,
               concat_ws(' ',
                   'position=' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                   'type=' || format_type(a.atttypid, a.atttypmod),
                   CASE WHEN a.attnotnull THEN 'NOT NULL' ELSE 'NULL' END,
                   'default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
                   'identity=' || a.attidentity::text, 'generated=' || a.attgenerated::text,
                   'collation=' || coalesce(co.collname, ''),
                   'storage=' || a.attstorage::text)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        LEFT JOIN pg_collation co
               ON co.oid = a.attcollation AND a.attcollation <> 0 AND co.collname <> 'default'
        WHERE c.relnamespace = %(schema)s::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraint": """
        SELECT coalesce(c.relname, t.typname, '') || '.' || k.conname,
               concat_ws(' ', 'type=' || k.contype::text, pg_get_constraintdef(k.oid),
                         'deferrable=' || k.condeferrable, 'deferred=' || k.condeferred,
                         'validated=' || k.convalidated)
        FROM pg_constraint k
        LEFT JOIN pg_class c ON c.oid = k.conrelid
        LEFT JOIN pg_type t ON t.oid = k.contypid
        WHERE k.connamespace = %(schema)s::regnamespace""",
    "index": """
        SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = %(schema)s""",
    "trigger": """
        SELECT c.relname || '.' || t.tgname,
               pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = %(schema)s::regnamespace AND NOT t.tgisinternal""",
    "function": """
        SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid)
                    ELSE 'kind=' || p.prokind::text END
        FROM pg_proc p WHERE p.pronamespace = %(schema)s::regnamespace""",
    "view": """
        SELECT c.relname, 'kind=' || c.relkind::text || ' ' || pg_get_viewdef(c.oid)
        FROM pg_class c
        WHERE c.relnamespace = %(schema)s::regnamespace AND c.relkind IN ('v', 'm')""",
    "sequence": """
        SELECT c.relname,
               concat_ws(' ', s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmax,
                         s.seqmin, s.seqcache, s.seqcycle,
                         'owned_by=' || coalesce((
                             SELECT t.relname || '.' || a.attname
                             FROM pg_depend d
                             JOIN pg_class t ON t.oid = d.refobjid
                             JOIN pg_attribute a
                               ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                               AND d.refclassid = 'pg_class'::regclass
                               AND d.deptype IN ('a', 'i')), ''))
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        WHERE c.relnamespace = %(schema)s::regnamespace""",
    "type": """
        SELECT t.typname,
               concat_ws(' ', 'kind=' || t.typtype::text,
                         'base=' || CASE WHEN t.typbasetype <> 0
                                         THEN format_type(t.typbasetype, t.typtypmod) END,
                         'labels=' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                       FROM pg_enum e WHERE e.enumtypid = t.oid))
        FROM pg_type t
        WHERE t.typnamespace = %(schema)s::regnamespace AND t.typrelid = 0
          AND t.typcategory <> 'A'""",
    "comment": """
        SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
        FROM pg_description d
        WHERE (d.classoid = 'pg_class'::regclass AND d.objoid IN (
                   SELECT oid FROM pg_class WHERE relnamespace = %(schema)s::regnamespace))
           OR (d.classoid = 'pg_proc'::regclass AND d.objoid IN (
                   SELECT oid FROM pg_proc WHERE pronamespace = %(schema)s::regnamespace))
           OR (d.classoid = 'pg_namespace'::regclass
               AND d.objoid = %(schema)s::regnamespace)""",
    "policy": """
        SELECT p.tablename || '.' || p.policyname,
               concat_ws(' ', p.permissive, p.roles::text, p.cmd, p.qual, p.with_check)
        FROM pg_policies p WHERE p.schemaname = %(schema)s""",
    "rule": """
        SELECT r.tablename || '.' || r.rulename, r.definition
        FROM pg_rules r WHERE r.schemaname = %(schema)s""",
}


def _normalise(text: str, schema: str) -> str:
    """Replace the schema's name (quoted or not, as qualifier or channel) by <schema>."""
    name = re.escape(schema)
    text = re.sub(rf'(?<![\w"])(?:"{name}"|{name})(?=\.)', "<schema>", text)
    return text.replace(f"'{schema}'", "'<schema>'")


def catalog(conn: psycopg.Connection[Any], schema: str) -> Catalog:
    """Every object of ``schema`` as ``{kind: {name: description}}``, schema name normalised."""
    result: Catalog = {}
    for kind, query in _CATALOG_QUERIES.items():
        rows = conn.execute(query, {"schema": schema}).fetchall()
        result[kind] = {
            _normalise(str(name), schema): _normalise(str(description), schema)
            for name, description in rows
        }
    result["migration"] = {
        str(version): name
        for version, name in conn.execute(
            sql.SQL("SELECT version, name FROM {}.migrations").format(sql.Identifier(schema))
        ).fetchall()
    }
    return result


def catalog_diff(expected: Catalog, actual: Catalog) -> list[str]:
    """What differs, one readable line per object; empty when the catalogs are equal."""
    problems: list[str] = []
    for kind in sorted(set(expected) | set(actual)):
        want, got = expected.get(kind, {}), actual.get(kind, {})
        for name in sorted(set(want) | set(got)):
            if name not in got:
                problems.append(f"{kind} {name} is missing: {want[name]}")
            elif name not in want:
                problems.append(f"{kind} {name} is unexpected: {got[name]}")
            elif want[name] != got[name]:
                problems.append(
                    f"{kind} {name} differs:\n  expected {want[name]}\n  got      {got[name]}"
                )
    return problems


def snapshot(base_dsn: str, schema: str) -> Catalog:
    with psycopg.connect(base_dsn) as conn:
        return catalog(conn, schema)


def execute(base_dsn: str, statement: str) -> None:
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(statement.encode())


# -- setup script == migrations -----------------------------------------------------------


def test_setup_script_and_migrations_build_the_same_catalog(
    pg_server: str, psql: str, new_schema: Callable[[], str], tmp_path: Path
) -> None:
    from_script, from_migrations = new_schema(), new_schema()
    build_from_script(psql, pg_server, from_script, tmp_path)
    applied = build_from_migrations(pg_server, from_migrations)
    assert applied == [version for version, _ in migrations()]

    expected = snapshot(pg_server, from_script)
    actual = snapshot(pg_server, from_migrations)
    assert catalog_diff(expected, actual) == []
    # The comparison saw the real thing, not two empty lists.
    assert {"jobs", "events", "workers", "migrations"} <= set(expected["relation"])
    assert {"jobs_claim", "jobs_claim_by_queue"} <= set(expected["index"])
    assert "jobs.jobs_notify" in expected["trigger"]
    assert any(name.startswith("take_back_jobs(") for name in expected["function"])
    assert {"job_history", "latest_by_ref", "task_hourly"} <= set(expected["view"])
    assert "fillfactor=90" in expected["relation"]["jobs"]
    assert "NOT NULL" in expected["column"]["jobs.status"]


# (statement breaking the migrated schema, a name the difference report must mention)
DRIFTS = {
    "missing index": ("DROP INDEX {s}.jobs_claim", "index jobs_claim is missing"),
    "index definition": (
        "DROP INDEX {s}.jobs_held; CREATE INDEX jobs_held ON {s}.jobs (worker_id)",
        "index jobs_held differs",
    ),
    "column default": (
        "ALTER TABLE {s}.jobs ALTER COLUMN priority SET DEFAULT 5",
        "column jobs.priority differs",
    ),
    "nullability": (
        "ALTER TABLE {s}.events ALTER COLUMN detail SET NOT NULL",
        "column events.detail differs",
    ),
    "column type": (
        "ALTER TABLE {s}.jobs ALTER COLUMN timeout TYPE real",
        "column jobs.timeout differs",
    ),
    "extra column": ("ALTER TABLE {s}.jobs ADD COLUMN note text", "column jobs.note is unexpected"),
    "check constraint": (
        "ALTER TABLE {s}.workers DROP CONSTRAINT workers_status_check",
        "constraint workers.workers_status_check is missing",
    ),
    "storage options": ("ALTER TABLE {s}.jobs RESET (fillfactor)", "relation jobs differs"),
    "trigger": ("DROP TRIGGER jobs_notify ON {s}.jobs", "trigger jobs.jobs_notify is missing"),
    "function body": (
        "CREATE OR REPLACE FUNCTION {s}.notify_jobs() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NULL; END; $$",
        "function notify_jobs() differs",
    ),
    "view": ("DROP VIEW {s}.task_hourly", "view task_hourly is missing"),
    "migration record": (
        "DELETE FROM {s}.migrations WHERE version = 1",
        "migration 1 is missing",
    ),
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_catalog_comparison_reports_drift(
    drift: str, pg_server: str, psql: str, new_schema: Callable[[], str], tmp_path: Path
) -> None:
    from_script, broken = new_schema(), new_schema()
    build_from_script(psql, pg_server, from_script, tmp_path)
    build_from_migrations(pg_server, broken)
    statement, mentioned = DRIFTS[drift]
    execute(pg_server, statement.format(s=broken))

    problems = catalog_diff(snapshot(pg_server, from_script), snapshot(pg_server, broken))

    assert problems, f"the comparison did not notice: {drift}"
    assert any(mentioned in problem for problem in problems), "\n".join(problems)


# -- tasktrail schema / tasktrail migrate -------------------------------------------------

# Run by psql in the same transaction as the setup script: which schemas hold the
# catalog rows that this transaction created or changed.
TOUCHED_QUERY = """
WITH mine AS (SELECT xid(pg_current_xact_id()) AS xid)
SELECT DISTINCT t.kind || ' in ' || n.nspname
FROM (
    SELECT 'relation' AS kind, relnamespace AS ns FROM pg_class, mine WHERE xmin = mine.xid
    UNION ALL
    SELECT 'function', pronamespace FROM pg_proc, mine WHERE xmin = mine.xid
    UNION ALL
    SELECT 'type', typnamespace FROM pg_type, mine WHERE xmin = mine.xid
    UNION ALL
    SELECT 'constraint', connamespace FROM pg_constraint, mine WHERE xmin = mine.xid
    UNION ALL
    SELECT 'trigger', c.relnamespace
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid, mine WHERE t.xmin = mine.xid
    UNION ALL
    SELECT 'schema', oid FROM pg_namespace, mine WHERE xmin = mine.xid
) AS t
JOIN pg_namespace n ON n.oid = t.ns
WHERE n.nspname <> 'pg_toast'  -- TOAST tables of the new tables live there by design
ORDER BY 1;
"""


def test_schema_command_prints_a_script_psql_runs_twice_creating_only_its_schema(
    pg_server: str, psql: str, new_schema: Callable[[], str], tmp_path: Path
) -> None:
    schema, reference = new_schema(), new_schema()
    printed = run_cli("schema", "--dsn", with_schema(pg_server, schema))
    assert printed.returncode == 0, printed.stderr
    script = tmp_path / "setup.sql"
    script.write_text(printed.stdout)
    assert "tasktrail." not in printed.stdout  # every object is in the chosen schema
    assert printed.stdout.startswith(f'-- Rendered for the schema "{schema}"')
    assert "`tasktrail migrate`" in printed.stdout  # prose still names the command
    probe = tmp_path / "touched.sql"
    probe.write_text(TOUCHED_QUERY)

    first = run_psql(psql, pg_server, script, probe, single_transaction=True)
    assert first.returncode == 0, first.stderr
    assert "ERROR" not in first.stderr, first.stderr
    touched = first.stdout.splitlines()
    assert f"relation in {schema}" in touched, first.stdout
    assert f"function in {schema}" in touched, first.stdout
    outside = [line for line in touched if not line.endswith(f" in {schema}")]
    assert outside == [], f"the setup script touched other schemas: {outside}"

    after_first = snapshot(pg_server, schema)
    second = run_psql(psql, pg_server, script)  # as a DBA would, without -1
    assert second.returncode == 0, second.stderr
    assert "ERROR" not in second.stderr, second.stderr
    assert catalog_diff(after_first, snapshot(pg_server, schema)) == []

    # What psql built is what the migrations build.
    build_from_migrations(pg_server, reference)
    assert catalog_diff(snapshot(pg_server, reference), after_first) == []


def test_migrate_command_is_idempotent_and_agrees_with_the_setup_script(
    pg_server: str, psql: str, new_schema: Callable[[], str], tmp_path: Path
) -> None:
    migrated, scripted = new_schema(), new_schema()
    first = run_cli("migrate", "--dsn", with_schema(pg_server, migrated))
    assert first.returncode == 0, first.stderr
    assert f"applied migrations {all_versions()}" in first.stdout
    after_first = snapshot(pg_server, migrated)

    second = run_cli("migrate", "--dsn", with_schema(pg_server, migrated))
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert catalog_diff(after_first, snapshot(pg_server, migrated)) == []

    # A database set up with the script is current for `migrate` too.
    build_from_script(psql, pg_server, scripted, tmp_path)
    third = run_cli("migrate", "--dsn", with_schema(pg_server, scripted))
    assert third.returncode == 0, third.stderr
    assert "up to date" in third.stdout
    assert catalog_diff(after_first, snapshot(pg_server, scripted)) == []


def test_two_migrate_processes_at_once_both_succeed_and_apply_each_migration_once(
    pg_server: str, new_schema: Callable[[], str]
) -> None:
    schema = new_schema()
    dsn = with_schema(pg_server, schema)
    lock_key = f"tasktrail:{schema}"
    procs: list[subprocess.Popen[str]] = []
    with psycopg.connect(pg_server, autocommit=True) as holder:
        # Hold the migration lock so both processes are certainly inside migrate() at
        # the same time, then let them race.
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock_key,))
        try:
            for _ in range(2):
                procs.append(
                    subprocess.Popen(
                        [tasktrail_command(), "migrate", "--dsn", dsn],
                        cwd=REPO_ROOT,
                        env=cli_env(),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            deadline = time.monotonic() + DEADLINE
            while True:
                waiting = holder.execute(
                    """SELECT count(*) FROM pg_locks w JOIN pg_locks mine
                         ON mine.locktype = 'advisory' AND mine.pid = pg_backend_pid()
                        AND w.classid = mine.classid AND w.objid = mine.objid
                        AND w.objsubid = mine.objsubid
                       WHERE w.locktype = 'advisory' AND NOT w.granted"""
                ).fetchone()
                if waiting and waiting[0] == 2:
                    break
                exited = [p.poll() for p in procs if p.poll() is not None]
                assert not exited and time.monotonic() < deadline, (
                    "both migrate processes should be waiting for the migration lock; "
                    f"exited: {exited}"
                )
                time.sleep(0.02)
        finally:
            holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock_key,))
            outputs = []
            for proc in procs:
                try:
                    outputs.append((*proc.communicate(timeout=DEADLINE), proc.returncode))
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()

    for _, stderr, returncode in outputs:
        assert returncode == 0, stderr
    messages = sorted(stdout.strip() for stdout, _, _ in outputs)
    assert sum(f"applied migrations {all_versions()}" in m for m in messages) == 1, messages
    assert sum("up to date" in m for m in messages) == 1, messages
    with psycopg.connect(pg_server) as conn:
        versions = conn.execute(
            sql.SQL("SELECT version FROM {}.migrations ORDER BY version").format(
                sql.Identifier(schema)
            )
        ).fetchall()
    assert [row[0] for row in versions] == [version for version, _ in migrations()]


V1_JOBS = [
    # (status, args, kwargs, result) as version 1 stored them (jsonb)
    ("succeeded", '[1, 2.5, "x", {"a": [true, null]}]', '{"k": "v\u00e9"}', '{"r": [1, 2]}'),
    ("queued", "[]", '{"n": 42}', None),
    ("failed", '["boom"]', "{}", None),
]


def test_migrate_upgrades_a_version_1_database_and_keeps_its_jobs(
    pg_server: str, psql: str, new_schema: Callable[[], str], tmp_path: Path
) -> None:
    old, reference = new_schema(), new_schema()
    first_version, first_file = migrations()[0]
    assert first_version == 1
    v1 = resources.files("tasktrail").joinpath("sql/postgres/migrations").joinpath(first_file)
    script = tmp_path / "v1.sql"
    script.write_text(  # as `tasktrail migrate` applies it: into a schema it created
        render("CREATE SCHEMA tasktrail;\n", old)
        + render(v1.read_text("utf-8"), old)
        + render("\nINSERT INTO tasktrail.migrations (version, name) VALUES (1, 'initial');", old)
    )
    result = run_psql(psql, pg_server, script)
    assert result.returncode == 0, result.stderr
    ids = []
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for status, args, kwargs, job_result in V1_JOBS:
            row = conn.execute(
                sql.SQL(
                    "INSERT INTO {} (task, queue, status, args, kwargs, result, attempts,"
                    " finished_at) VALUES ('t', 'default', %s, %s, %s, %s, %s, %s) RETURNING id"
                ).format(sql.Identifier(old, "jobs")),
                (
                    status,
                    args,
                    kwargs,
                    job_result,
                    0 if status == "queued" else 1,
                    None if status == "queued" else "2026-01-01T00:00:00Z",
                ),
            ).fetchone()
            assert row is not None
            ids.append(row[0])
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (job_id, at, kind, attempt, detail)"
                    " VALUES (%s, now(), 'enqueued', 0, %s)"
                ).format(sql.Identifier(old, "events")),
                (row[0], '{"note": "from v1"}'),
            )

    upgraded = run_cli("migrate", "--dsn", with_schema(pg_server, old))
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"applied migrations {all_versions(2)}" in upgraded.stdout
    build_from_script(psql, pg_server, reference, tmp_path)
    assert catalog_diff(snapshot(pg_server, reference), snapshot(pg_server, old)) == []

    app = App(with_schema(pg_server, old))
    try:
        jobs = {job.id: job for job in app.jobs(limit=None)}
        assert [jobs[i].status for i in ids] == [status for status, *_ in V1_JOBS]
        assert jobs[ids[0]].args == [1, 2.5, "x", {"a": [True, None]}]
        assert jobs[ids[0]].kwargs == {"k": "v\u00e9"}
        assert jobs[ids[0]].result == {"r": [1, 2]}
        assert jobs[ids[1]].kwargs == {"n": 42}
        assert [e.detail for e in app.events(ids[2])] == [{"note": "from v1"}]
    finally:
        app.close()


# -- schema names ---------------------------------------------------------------------------

BAD_NAMES = [
    "x; drop table {sentinel}",
    "Robert'); drop table {sentinel}; --",
    'x"; drop table {sentinel}; --',
    "Jobs",
    "a" * 64,
    "1abc",
    "with space",
    "x\n",
]


@pytest.fixture
def sentinel(pg_server: str) -> Iterator[str]:
    """A table in ``public`` that an injected ``drop table`` would remove."""
    name = f"tt_sentinel_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE public.{} (id int)").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS public.{}").format(sql.Identifier(name)))


@pytest.mark.parametrize("template", BAD_NAMES, ids=repr)
def test_invalid_schema_names_are_refused_and_create_nothing(
    template: str, pg_server: str, sentinel: str
) -> None:
    name = template.format(sentinel=sentinel)
    for command in ("schema", "migrate"):
        result = run_cli(command, "--dsn", pg_server, "--schema", name)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "invalid schema name" in result.stderr, result.stderr
        assert "lower-case letters" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
    with pytest.raises(ConfigurationError, match="invalid schema name"):
        App(with_schema(pg_server, quote(name, safe="")))
    with pytest.raises(ConfigurationError, match="invalid schema name"):
        App(pg_server, schema=name)

    with psycopg.connect(pg_server) as conn:
        still_there = conn.execute("SELECT to_regclass(%s)", (f"public.{sentinel}",)).fetchone()
        created = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY (%s)",
            ([name, name.lower(), name.strip(), name[:63]],),
        ).fetchall()
    assert still_there is not None and still_there[0] is not None
    assert created == []


@pytest.fixture
def reserved_word_schema(pg_server: str) -> Iterator[str]:
    """The schema ``select`` (a fixed name: serialised between test runs by a lock)."""
    with psycopg.connect(pg_server, autocommit=True) as guard:
        guard.execute("SELECT pg_advisory_lock(hashtext('tasktrail-tests:select-schema'))")
        try:
            guard.execute('DROP SCHEMA IF EXISTS "select" CASCADE')
            yield "select"
        finally:
            guard.execute('DROP SCHEMA IF EXISTS "select" CASCADE')
            guard.execute("SELECT pg_advisory_unlock(hashtext('tasktrail-tests:select-schema'))")


def test_a_reserved_word_works_as_schema_name_because_names_are_quoted(
    pg_server: str,
    psql: str,
    reserved_word_schema: str,
    new_schema: Callable[[], str],
    tmp_path: Path,
) -> None:
    schema = reserved_word_schema
    migrated = run_cli("migrate", "--dsn", pg_server, "--schema", schema)
    assert migrated.returncode == 0, migrated.stderr
    reference = new_schema()
    build_from_script(psql, pg_server, reference, tmp_path)
    assert catalog_diff(snapshot(pg_server, reference), snapshot(pg_server, schema)) == []

    printed = run_cli("schema", "--dsn", with_schema(pg_server, schema))
    assert printed.returncode == 0, printed.stderr
    assert '"select".jobs' in printed.stdout
    script = tmp_path / "select.sql"
    script.write_text(printed.stdout)
    for _ in range(2):
        result = run_psql(psql, pg_server, script)
        assert result.returncode == 0, result.stderr

    # And the queue works in it.
    app = App(with_schema(pg_server, schema))
    try:
        task = app.task(name="hello")(lambda who: f"hello {who}")
        handle = task.enqueue("world", ref=("website", 42))
        assert app.job(handle.id).status == "queued"
        assert [e.kind for e in handle.events()] == ["enqueued"]
        assert [job.id for job in app.jobs(ref=("website", 42))] == [handle.id]
    finally:
        app.close()


def test_the_longest_schema_name_postgresql_allows_works(
    pg_server: str, new_schema: Callable[[], str]
) -> None:
    schema = new_schema().ljust(63, "x")
    with psycopg.connect(pg_server, autocommit=True) as conn:
        try:
            result = run_cli("migrate", "--dsn", pg_server, "--schema", schema)
            assert result.returncode == 0, result.stderr
            exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.jobs",)).fetchone()
            assert exists is not None and exists[0] is not None
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
