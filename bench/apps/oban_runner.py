"""Runs one Oban measurement and prints its result as one JSON line on stdout.

Oban (the Python port, ``oban`` on PyPI) needs Python >= 3.12 while the benchmark runs on
the project's 3.11, so bench/peers/oban_peer.py runs this script with the interpreter of
bench/.venv-oban-3.12::

    python bench/apps/oban_runner.py OPERATION --dsn URL [options]

Operations: ``install``, ``reset``, ``enqueue_single``, ``enqueue_bulk``, ``drain``,
``sleep``, ``latency`` (see ``main``). Enqueues go through Oban's client API
(``Oban(pool=...)`` without queues, ``oban.enqueue`` / ``oban.enqueue_many``); workers
are ``oban start --queues default:LIMIT`` processes (Oban's CLI), polled in the
``oban_jobs`` table until every job is ``completed``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.peers import pgutil  # noqa: E402

RESET = "TRUNCATE oban_jobs, oban_producers, oban_leaders RESTART IDENTITY"
REMAINING = (
    "SELECT count(*) FROM oban_jobs"
    " WHERE state IN ('available', 'scheduled', 'executing', 'retryable')"
)
COMPLETED = "SELECT count(*) FROM oban_jobs WHERE state = 'completed'"
# The oban_jobs timestamps are UTC "timestamp without time zone": extract(epoch) of such a
# value counts from 1970-01-01 00:00 as if UTC, which is what they are.
LAST_COMPLETED = "SELECT extract(epoch FROM max(completed_at))::float8 FROM oban_jobs"
FIRST_ATTEMPTED = "SELECT extract(epoch FROM min(attempted_at))::float8 FROM oban_jobs"


class Database(pgutil.ThrowawayDatabase):
    """The database the driver created, addressed by its URL (no create/drop here)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = url.rsplit("/", 1)[-1]
        self.server_dsn = url


async def open_oban(url: str, max_size: int = 10) -> tuple[Any, Any]:
    from oban import Oban

    pool = await Oban.create_pool(url, min_size=1, max_size=max_size)
    return pool, Oban(pool=pool)


async def install(url: str) -> dict:
    from oban.schema import install as install_schema

    pool, _ = await open_oban(url)
    try:
        await install_schema(pool)
    finally:
        await pool.close()
    return {"ok": True}


async def enqueue_single(url: str, count: int) -> dict:
    from bench.apps.oban_app import NoopWorker

    pool, oban = await open_oban(url)
    try:
        started = time.perf_counter()
        for _ in range(count):
            await oban.enqueue(NoopWorker.new({}))
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    return {"rate": count / elapsed}


async def enqueue_many(url: str, worker: str, count: int, args: dict, batch: int) -> float:
    from bench.apps import oban_app

    cls = getattr(oban_app, worker)
    pool, oban = await open_oban(url)
    try:
        started = time.perf_counter()
        for start in range(0, count, batch):
            n = min(batch, count - start)
            await oban.enqueue_many([cls.new(dict(args)) for _ in range(n)])
        return time.perf_counter() - started
    finally:
        await pool.close()


def worker_command(limit: int) -> list[str]:
    return pgutil.python_module(
        "oban", "start", "--queues", f"default:{limit}", "--log-level", "WARNING"
    )


def workers(url: str, processes: int, limit: int, env: dict | None = None) -> pgutil.Workers:
    return pgutil.Workers(
        [worker_command(limit)] * processes,
        env={"OBAN_DSN": url, **(env or {})},
        label="oban",
    )


def run_until_drained(url: str, count: int, processes: int, limit: int) -> dict:
    db = Database(url)
    with workers(url, processes, limit) as procs:
        spawned = procs.start()
        pgutil.wait_for_zero(db, REMAINING, procs)
        procs.stop()
    completed = int(db.scalar(COMPLETED))  # type: ignore[arg-type]
    if completed != count:
        raise RuntimeError(f"{completed}/{count} Oban jobs completed")
    last = float(db.scalar(LAST_COMPLETED))  # type: ignore[arg-type]
    first = float(db.scalar(FIRST_ATTEMPTED))  # type: ignore[arg-type]
    return {
        "seconds": last - spawned,
        "details": {
            "spawn_to_last": last - spawned,
            "first_start_to_last": last - first,
            "startup": first - spawned,
        },
    }


def drain(url: str, count: int, processes: int, limit: int, batch: int) -> dict:
    pre = asyncio.run(enqueue_many(url, "NoopWorker", count, {}, batch))
    result = run_until_drained(url, count, processes, limit)
    result["rate"] = count / result["seconds"]
    result["details"]["pre_enqueue"] = pre
    return result


def sleep_jobs(url: str, count: int, seconds: float, processes: int, batch: int) -> dict:
    asyncio.run(enqueue_many(url, "SleepWorker", count, {"seconds": seconds}, batch))
    return run_until_drained(url, count, 1, processes)


async def paced(url: str, count: int, interval: float) -> dict[str, float]:
    from bench.apps.oban_app import RecordStartWorker

    pool, oban = await open_oban(url)
    enqueued: dict[str, float] = {}
    try:
        origin = time.perf_counter()
        for i in range(count):
            delay = origin + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            at = time.time()
            job = await oban.enqueue(RecordStartWorker.new({}))
            enqueued[str(job.id)] = at
    finally:
        await pool.close()
    return enqueued


def latency(url: str, count: int, interval: float, limit: int) -> dict:
    log = pgutil.StartLog()
    try:
        with workers(url, 1, limit, log.env()) as procs:
            procs.start()
            asyncio.run(paced(url, 1, 0.0))  # warm-up job
            log.wait_for(1, procs)
            log.path.write_text("")
            time.sleep(0.5)  # idle again
            enqueued = asyncio.run(paced(url, count, interval))
            log.wait_for(count, procs)
            return pgutil.latency_summary(enqueued, log.read())
    finally:
        log.remove()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "operation",
        choices=[
            "install",
            "reset",
            "enqueue_single",
            "enqueue_bulk",
            "drain",
            "sleep",
            "latency",
        ],
    )
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=1, help="oban start processes")
    parser.add_argument("--limit", type=int, default=10, help="queue limit of each process")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per enqueue_many")
    parser.add_argument("--seconds", type=float, default=0.05)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args(argv)

    import orjson
    from psycopg.types.json import set_json_dumps, set_json_loads

    # What `oban start` sets up; the client side of the measurements does the same.
    set_json_dumps(orjson.dumps)
    set_json_loads(orjson.loads)

    url = args.dsn
    op = args.operation
    if op == "install":
        result = asyncio.run(install(url))
    elif op == "reset":
        Database(url).execute(RESET)
        result = {"ok": True}
    elif op == "enqueue_single":
        result = asyncio.run(enqueue_single(url, args.count))
    elif op == "enqueue_bulk":
        seconds = asyncio.run(enqueue_many(url, "NoopWorker", args.count, {}, args.batch))
        result = {"rate": args.count / seconds}
    elif op == "drain":
        result = drain(url, args.count, args.processes, args.limit, args.batch)
    elif op == "sleep":
        result = sleep_jobs(url, args.count, args.seconds, args.processes, args.batch)
    else:
        result = latency(url, args.count, args.interval, args.limit)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
