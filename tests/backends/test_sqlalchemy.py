"""``connection=`` takes a SQLAlchemy Connection or Session: the job joins its
transaction, on both backends (PostgreSQL through psycopg 3, SQLite through pysqlite).
Rolled back: neither the business row nor the job exists; committed: both do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, scoped_session, sessionmaker

import tasktrail
from tasktrail import InvalidArguments

app = tasktrail.App("sqlite:///unused-sqlalchemy-tests.db")  # configured per test


@app.task(name="refresh")
def refresh(website_id: int) -> int:
    return website_id


@dataclass
class Stack:
    engine: sa.Engine
    table: sa.Table

    def insert(self, website_id: int) -> sa.Insert:
        return self.table.insert().values(id=website_id)


@pytest.fixture
def stack(dsn: str, pg_server_or_none: str | None) -> Iterator[Stack]:
    app.configure(dsn)
    assert app.jobs() == []  # the database set up (on SQLite: in WAL mode) before any lock
    metadata = sa.MetaData()
    table = sa.Table(
        f"websites_{uuid.uuid4().hex[:8]}", metadata, sa.Column("id", sa.Integer, primary_key=True)
    )
    if dsn.startswith("sqlite"):
        url = "sqlite:///" + dsn.removeprefix("sqlite:///")
    else:
        assert pg_server_or_none is not None
        url = pg_server_or_none.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    try:
        yield Stack(engine, table)
    finally:
        metadata.drop_all(engine)
        engine.dispose()
        app.close()


@pytest.fixture
def pg_server_or_none(request: pytest.FixtureRequest, dsn: str) -> str | None:
    return None if dsn.startswith("sqlite") else str(request.getfixturevalue("pg_server"))


def rows(stack: Stack) -> list[int]:
    with stack.engine.connect() as conn:
        return sorted(conn.execute(sa.select(stack.table.c.id)).scalars())


def refs() -> list[str]:
    return sorted(str(job.ref) for job in app.jobs(task="refresh", limit=None))


def test_a_connection_s_rollback_takes_the_job_with_it_and_its_commit_keeps_it(
    stack: Stack,
) -> None:
    with stack.engine.connect() as conn:
        conn.execute(stack.insert(1))
        refresh.enqueue(1, ref=("website", 1), connection=conn)
        conn.rollback()
        assert (rows(stack), refs()) == ([], [])
        # not in a transaction yet (nothing executed since): the enqueue begins one,
        # which the commit ends
        refresh.enqueue(2, ref=("website", 2), connection=conn)
        conn.execute(stack.insert(2))
        conn.commit()
    with stack.engine.begin() as conn:  # the usual form: committed at the block's end
        conn.execute(stack.insert(3))
        refresh.enqueue(3, ref=("website", 3), connection=conn)
    assert (rows(stack), refs()) == ([2, 3], ["website:2", "website:3"])
    assert [event.kind for event in app.events(app.jobs(task="refresh")[0].id)] == ["enqueued"]


def test_a_session_s_rollback_takes_the_job_with_it_and_its_commit_keeps_it(
    stack: Stack,
) -> None:
    with Session(stack.engine) as session:
        session.execute(stack.insert(1))
        refresh.enqueue(1, ref=("website", 1), connection=session)
        session.rollback()
        assert (rows(stack), refs()) == ([], [])
        refresh.enqueue(2, ref=("website", 2), connection=session)  # begins its transaction
        session.execute(stack.insert(2))
        assert refs() == []  # not committed yet: not there for anyone else
        session.commit()
    scoped = scoped_session(sessionmaker(stack.engine))
    try:
        app.enqueue_many(
            [refresh.prepare(n, ref=("website", n)) for n in (3, 4)], connection=scoped
        )
        scoped.commit()
    finally:
        scoped.remove()
    assert (rows(stack), refs()) == ([2], ["website:2", "website:3", "website:4"])


def test_a_sqlalchemy_connection_through_another_driver_is_refused_by_name(
    stack: Stack, tmp_path
) -> None:
    # PostgreSQL's backend needs psycopg; a SQLite backend needs that same file
    other = sa.create_engine(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    try:
        with other.connect() as conn, pytest.raises(InvalidArguments) as refused:
            refresh.enqueue(1, connection=conn)
    finally:
        other.dispose()
    assert "elsewhere.db" in str(refused.value) or "psycopg" in str(refused.value)
    assert refs() == []
