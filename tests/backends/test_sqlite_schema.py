"""The SQLite schema two ways: created fresh from ``schema.sql``, and a version 1 database
(as released) brought up by the migrations. Both must end with the same catalog: the
same tables with the same columns, indexes (with their partial conditions), views and
triggers; and the upgraded one keeps its rows."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from tasktrail.backends.sqlite.backend import SCHEMA_VERSION, SqliteBackend
from tasktrail.config import parse_dsn

V1 = Path(__file__).with_name("sqlite_schema_v1.sql")


def _normal(text: str | None) -> str:
    """SQL text without comments, case or spacing differences."""
    if text is None:
        return ""
    text = re.sub(r"--[^\n]*", "", text)
    text = re.sub(r"\s+", " ", text).strip().lower()
    return re.sub(r"\s*([(),=])\s*", r"\1", text).replace("if not exists ", "")


def catalog(path: Path) -> dict[str, Any]:
    """What the database is made of, comparably."""
    conn = sqlite3.connect(path)
    try:
        found: dict[str, Any] = {}
        for kind, name, table, text in conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ):
            if kind == "table":
                columns = conn.execute(f"PRAGMA table_xinfo('{name}')").fetchall()
                found[f"table {name}"] = sorted(
                    (col[1], col[2].upper(), col[3], _normal(col[4]), col[5]) for col in columns
                )
            elif kind == "index":
                found[f"index {name}"] = (table, _normal(text))
            else:  # views and triggers: their text is what they are
                found[f"{kind} {name}"] = _normal(text)
        return found
    finally:
        conn.close()


def fresh_database(path: Path) -> Path:
    backend = SqliteBackend(parse_dsn(f"sqlite:///{path}"))  # type: ignore[arg-type]
    try:
        assert backend.migrate() == [SCHEMA_VERSION]  # from schema.sql
    finally:
        backend.close()
    return path


def test_a_version_1_database_upgraded_equals_a_fresh_one_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.executescript(V1.read_text(encoding="utf-8"))
    conn.execute(
        "INSERT INTO jobs (task, queue, status, args, kwargs, attempts, run_at, created_at) "
        "VALUES ('t', 'default', 'succeeded', '[1]', '{}', 1, '2026-01-01T00:00:00.000000+00:00', "
        "'2026-01-01T00:00:00.000000+00:00')"
    )
    conn.commit()
    conn.close()

    upgraded = SqliteBackend(parse_dsn(f"sqlite:///{old}"))  # type: ignore[arg-type]
    try:
        assert upgraded.migrate() == list(range(2, SCHEMA_VERSION + 1))
        [job] = upgraded.list_jobs(
            __import__("tasktrail.backends", fromlist=["JobFilter"]).JobFilter()
        )
        assert (job.task, job.status, job.args, job.parent_id, job.root_id) == (
            "t", "succeeded", [1], None, job.id,
        )  # fmt: skip
    finally:
        upgraded.close()

    fresh = fresh_database(tmp_path / "fresh.db")
    before, after = catalog(fresh), catalog(old)
    assert sorted(before) == sorted(after)
    for name in before:
        assert before[name] == after[name], name


def test_the_catalog_comparison_sees_a_missing_column(tmp_path: Path) -> None:
    """The check above could fail: one column fewer is a difference."""
    fresh = fresh_database(tmp_path / "fresh.db")
    changed = fresh_database(tmp_path / "changed.db")
    conn = sqlite3.connect(changed)
    conn.execute("ALTER TABLE schedules DROP COLUMN calendar")
    conn.commit()
    conn.close()
    assert catalog(fresh)["table schedules"] != catalog(changed)["table schedules"]
