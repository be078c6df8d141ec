"""Opening a SQLite database that another process is converting to WAL or writing.

SQLite runs no busy handler for the conversion of a file to WAL mode, so without care
the second of two processes opening a new database at once fails with "database is
locked" at once, whatever the busy timeout. Found by the concurrent-enqueue integration
test (several processes enqueueing into a database none of them had opened before).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from tasktrail.backends import JobFilter, open_backend

from .helpers import T0, enqueue, new_job


def test_opening_a_new_file_another_connection_is_writing_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE business (x)")  # a new file, still in rollback mode
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a process converting it holds
    released = threading.Event()

    def release() -> None:
        holder.execute("COMMIT")
        released.set()

    timer = threading.Timer(0.2, release)
    timer.start()
    try:
        backend = open_backend(f"sqlite:///{path}")
    finally:
        timer.join()
        holder.close()
    try:
        assert released.is_set()  # it waited for the lock instead of failing
        backend.setup()
        [job_id] = enqueue(backend, [new_job()], now=T0)
        assert [job.id for job in backend.list_jobs(JobFilter())] == [job_id]
    finally:
        backend.close()
    with closing(sqlite3.connect(path)) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
