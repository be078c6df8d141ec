"""The PGQueuer application that its benchmark workers run.

A worker process is ``python -m bench.apps.pgqueuer_app --batch-size N``, which calls
``pgqueuer.run(create_pgqueuer, batch_size=N, ...)``: PGQueuer's documented "run a worker
as ``pgq run`` does, without the CLI", on uvloop like the CLI. (``pgq run`` itself cannot
start with pgqueuer 1.6.0 and typer 0.29: its ``--log-level`` option reaches
``setup_fancy_logger`` as a str and fails with "'str' object has no attribute 'name'",
even with the default.) The database comes from ``BENCH_PGQUEUER_DSN`` and the driver from
``BENCH_PGQUEUER_DRIVER`` (``asyncpg``, PGQueuer's recommended driver and the default;
``asyncpg-pool`` or ``psycopg``, kept to compare when choosing the configuration).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from pgqueuer import PgQueuer
from pgqueuer.models import Job

from bench.peers.pgutil import mark_ready, record_start

DSN_ENV = "BENCH_PGQUEUER_DSN"
DRIVER_ENV = "BENCH_PGQUEUER_DRIVER"


def register(pgq: PgQueuer) -> PgQueuer:
    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        """The no-op job of the throughput scenarios."""

    @pgq.entrypoint("sleep")
    async def sleep(job: Job) -> None:
        """The I/O-like job: its payload is the seconds to wait, as text."""
        await asyncio.sleep(float(job.payload or b"0"))

    @pgq.entrypoint("record_start")
    async def record(job: Job) -> None:
        """The latency job: writes its id and the time it started to the start log."""
        record_start(job.id)

    mark_ready()  # connected and its entrypoints registered: it runs next
    return pgq


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    dsn = os.environ[DSN_ENV]
    driver = os.environ.get(DRIVER_ENV, "asyncpg")
    if driver == "asyncpg":
        import asyncpg

        connection = await asyncpg.connect(dsn)
        try:
            yield register(PgQueuer.from_asyncpg_connection(connection))
        finally:
            await connection.close()
    elif driver == "asyncpg-pool":
        import asyncpg

        async with asyncpg.create_pool(dsn) as pool:
            yield register(PgQueuer.from_asyncpg_pool(pool))
    elif driver == "psycopg":
        import psycopg

        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            yield register(PgQueuer.from_psycopg_connection(conn))
    else:
        raise ValueError(f"unknown {DRIVER_ENV}={driver!r}")


def main(argv: list[str] | None = None) -> None:
    import pgqueuer
    from pgqueuer.adapters.cli.cli import asyncio_run

    parser = argparse.ArgumentParser(description="A PGQueuer worker for the benchmarks.")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--max-concurrent-tasks", type=int, default=None)
    parser.add_argument("--dequeue-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    asyncio_run(
        pgqueuer.run(
            create_pgqueuer,
            batch_size=args.batch_size,
            max_concurrent_tasks=args.max_concurrent_tasks,
            dequeue_timeout=timedelta(seconds=args.dequeue_timeout),
        )
    )


if __name__ == "__main__":
    main()
