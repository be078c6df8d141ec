"""The Oban (Python port) workers of the benchmarks.

Python >= 3.12 only (Oban's own requirement): imported by ``oban start`` worker processes
and by bench/apps/oban_runner.py, both run with bench/.venv-oban-3.12. Oban resolves a
job's worker by its dotted path, ``bench.apps.oban_app.NoopWorker``. All are ``async``:
an Oban queue runs up to its limit of jobs at once as asyncio tasks in one process.
"""

from __future__ import annotations

import asyncio

from oban import worker

from bench.peers.pgutil import record_start

QUEUE = "default"


@worker(queue=QUEUE)
class NoopWorker:
    """The no-op job of the throughput scenarios."""

    async def process(self, job):
        return None


@worker(queue=QUEUE)
class SleepWorker:
    """The I/O-like job: waits ``args["seconds"]``."""

    async def process(self, job):
        await asyncio.sleep(float(job.args["seconds"]))


@worker(queue=QUEUE)
class RecordStartWorker:
    """The latency job: writes its id and the time it started to the start log."""

    async def process(self, job):
        record_start(job.id)
