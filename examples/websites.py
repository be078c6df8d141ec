"""The bundled example: refresh the front page of every website, then its articles.

    python examples/websites.py

It runs offline on the embedded default (one SQLite file, ``websites-example.db`` in the
current directory, holding both the business table and the jobs), or on PostgreSQL with
``TASKTRAIL_DSN=postgresql://…``. It

1. creates a small business table ``websites`` and, in the same transaction as each row,
   enqueues ``refresh_frontpage(website_id)`` with ``ref=("website", id)``;
2. runs a worker with 4 forked processes until the queue is drained. Front-page jobs
   enqueue one ``count_comments`` job per article, and a ``website_kpis`` job that waits
   for all of them (``after=``) and sums their counts into the website's row; a flaky
   website fails its first attempt and succeeds on retry; a broken one fails every
   attempt;
3. prints per-task statistics, the tree of one website's jobs and its full history.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import tasktrail
from tasktrail.config import parse_dsn

DSN = os.environ.get("TASKTRAIL_DSN") or "sqlite:///websites-example.db"
app = tasktrail.App(DSN)

WEBSITES = [
    "acme.example",
    "globex.example",
    "initech.example",
    "umbrella.example",
    "hooli.example",
    "stark.example",
    "wayne.example",
    "wonka.example",
    "tyrell.example",
    "cyberdyne.example",
    "soylent.example",
    "oscorp.example",
]
FLAKY = "hooli.example"  # fails its first attempt, then works
BROKEN = "cyberdyne.example"  # fails every attempt


def business_db() -> Any:
    """A connection to the database the business data lives in (the same one)."""
    if DSN.startswith("sqlite:"):
        return sqlite3.connect(str(parse_dsn(DSN).path), timeout=30)
    import psycopg

    return psycopg.connect(parse_dsn(DSN).conninfo)


def sql(statement: str) -> str:
    """``statement`` in the placeholder style of the database (``?`` or ``%s``)."""
    return statement if DSN.startswith("sqlite:") else statement.replace("?", "%s")


@app.task(name="refresh_frontpage", retries=2, retry_delay=0.2, timeout=10)
def refresh_frontpage(website_id: int) -> dict[str, Any]:
    """'Fetch' a front page (offline: derived from the name) and queue its articles."""
    with closing(business_db()) as db:
        (host,) = db.execute(
            sql("SELECT host FROM websites WHERE id = ?"), (website_id,)
        ).fetchone()
        job = tasktrail.current_job()
        if host == BROKEN or (host == FLAKY and job is not None and job.attempt == 1):
            raise ConnectionError(f"{host}: connection reset by peer")
        time.sleep(0.02)  # the network round trip we pretend to make
        digest = hashlib.sha256(host.encode()).digest()
        articles = [f"/news/{digest[i]}" for i in range(2 + digest[0] % 3)]
        db.execute(
            sql("UPDATE websites SET articles = ?, refreshed_at = CURRENT_TIMESTAMP WHERE id = ?"),
            (len(articles), website_id),
        )
        db.commit()
    counts = app.enqueue_many(
        count_comments.prepare(website_id, path, ref=("website", website_id)) for path in articles
    )
    # runs once every count has ended (cancelled if one of them fails for good)
    website_kpis.enqueue(website_id, ref=("website", website_id), after=counts)
    return {"host": host, "articles": articles}


@app.task(name="count_comments", retries=1, retry_delay=0.2)
def count_comments(website_id: int, path: str) -> int:
    """'Count' the comments of one article."""
    time.sleep(0.005)
    return int(hashlib.sha256(f"{website_id}{path}".encode()).hexdigest(), 16) % 500


@app.task(name="website_kpis")
def website_kpis(website_id: int) -> dict[str, int]:
    """Sum the comment counts of a website's articles into its row."""
    job = tasktrail.current_job()
    assert job is not None
    counts = job.after_results()  # {count_comments job id: its result}
    total = sum(counts.values())
    with closing(business_db()) as db:
        db.execute(sql("UPDATE websites SET comments = ? WHERE id = ?"), (total, website_id))
        db.commit()
    return {"articles": len(counts), "comments": total}


def create_websites() -> None:
    """The business table, each row inserted with its job in one transaction."""
    with closing(business_db()) as db:
        db.execute("DROP TABLE IF EXISTS websites")
        db.execute(
            "CREATE TABLE websites (id integer PRIMARY KEY, host text NOT NULL, "
            "articles integer, comments integer, refreshed_at timestamp)"
        )
        db.commit()
        for website_id, host in enumerate(WEBSITES, start=1):
            db.execute(sql("INSERT INTO websites (id, host) VALUES (?, ?)"), (website_id, host))
            refresh_frontpage.enqueue(website_id, ref=("website", website_id), connection=db)
            db.commit()


def main() -> int:
    from tasktrail.cli import cli

    logging.basicConfig(level=logging.WARNING, format="  worker log: %(message)s")
    if DSN.startswith("sqlite:"):
        path = parse_dsn(DSN).path
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    app.backend  # noqa: B018 - opens the database and creates the tasktrail tables
    create_websites()
    print(f"enqueued {len(WEBSITES)} front-page jobs in {app.url}; running a worker…")
    started = time.monotonic()
    app.run_worker(processes=4, burst=True, poll_interval=0.1)
    print(f"queue drained in {time.monotonic() - started:.1f}s\n")

    flaky_id = WEBSITES.index(FLAKY) + 1
    for args in (
        ["stats", "--dsn", DSN, "--window", "1h"],
        ["jobs", "--dsn", DSN, "--ref", f"website:{flaky_id}"],
    ):
        cli.main(args=args, standalone_mode=False)
        print()
    front = app.jobs(ref=("website", flaky_id), task=refresh_frontpage.name, limit=1)[0]
    print(f"the jobs of {FLAKY} (website:{flaky_id}), from its front page down:")
    cli.main(args=["tree", "--dsn", DSN, str(front.id)], standalone_mode=False)
    print(f"\nhistory of job {front.id}, the front page of {FLAKY}:")
    cli.main(args=["show", "--dsn", DSN, str(front.id)], standalone_mode=False)
    broken = app.jobs(ref=("website", WEBSITES.index(BROKEN) + 1), task=refresh_frontpage.name)
    print(f"\n{BROKEN}: {broken[0].status} after {broken[0].attempts} attempts: {broken[0].error}")
    with closing(business_db()) as db:
        totals = db.execute("SELECT host, articles, comments FROM websites ORDER BY id").fetchall()
    print("\nwebsites (articles, comments summed by website_kpis once all its counts ended):")
    for host, articles, comments in totals:
        print(f"  {host:<20} {articles if articles is not None else '-':>3} articles"
              f"  {comments if comments is not None else '-':>5} comments")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
