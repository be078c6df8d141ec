"""The procrastinate application that its benchmark workers run.

Workers start it as ``procrastinate --app=bench.apps.procrastinate_app.app worker``; the
database comes from ``BENCH_PROCRASTINATE_DSN`` (set by bench/peers/procrastinate_peer.py).
The tasks are ``async def``, procrastinate's way to run several jobs at once in one
worker (``--concurrency``); a sync task would run in a thread instead.
"""

from __future__ import annotations

import asyncio
import os

from procrastinate import App, JobContext, PsycopgConnector

from bench.peers.pgutil import record_start as _record_start

DSN_ENV = "BENCH_PROCRASTINATE_DSN"

app = App(connector=PsycopgConnector(conninfo=os.environ.get(DSN_ENV, "")))


@app.task(name="noop")
async def noop() -> None:
    """The no-op job of the throughput scenarios."""


@app.task(name="noop_sync")
def noop_sync() -> None:
    """A sync no-op, only to compare with ``noop`` when choosing the configuration."""


@app.task(name="sleep")
async def sleep(seconds: float) -> None:
    """The I/O-like job: waits ``seconds`` without holding the worker's event loop."""
    await asyncio.sleep(seconds)


@app.task(name="record_start", pass_context=True)
async def record_start(context: JobContext) -> None:
    """The latency job: writes its id and the time it started to the start log."""
    assert context.job is not None
    _record_start(context.job.id)
