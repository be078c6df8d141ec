"""Oban, the Python port (``oban`` on PyPI), on PostgreSQL, driven with its own API.

Oban needs Python >= 3.12 and the benchmark runs on the project's 3.11, so this driver
keeps a 3.12 virtualenv at bench/.venv-oban-3.12 (created once from
``/root/.pyenv/versions/3.12.1/bin/python``, or ``BENCH_PYTHON312``, with ``pip install
oban psycopg[binary]``; gitignored) and runs every measurement in
bench/apps/oban_runner.py under that interpreter, which prints its result as JSON.

- Schema: ``oban.schema.install(pool)`` (what ``oban install`` runs) in a throw-away
  database.
- Enqueue: ``oban.enqueue(Worker.new(...))`` (one job, one transaction) and
  ``oban.enqueue_many([...])`` (the open-source port inserts them one statement each, in
  one transaction).
- Workers: real subprocesses, ``oban start --queues default:L`` (Oban's CLI, log level
  WARNING). A queue runs up to L jobs at once as asyncio tasks in one process; Oban's way
  to use more cores is more nodes, so "W workers x P processes" is W*P ``oban start``
  processes with limit L each (L chosen by measurement, ``LIMIT``). The I/O-like
  scenario's "P processes" is one process with limit P, its nearest equivalent.
- Drained: no job ``available``/``scheduled``/``executing``/``retryable`` left in
  ``oban_jobs`` (and all ``completed``); the end time is the last ``completed_at``, the
  start the moment the first worker process is spawned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.peers import pgutil
from bench.peers.base import Latency, NotSupported, Peer

VENV = pgutil.REPO_ROOT / "bench" / ".venv-oban-3.12"
PYTHON312 = os.environ.get("BENCH_PYTHON312", "/root/.pyenv/versions/3.12.1/bin/python")
RUNNER = pgutil.REPO_ROOT / "bench" / "apps" / "oban_runner.py"

#: Queue limit (jobs at once) of each ``oban start`` process for the throughput scenarios.
LIMIT = 20
#: Jobs per ``enqueue_many`` call.
BATCH = 1000


def ensure_venv() -> Path:
    """The 3.12 interpreter with oban installed, creating the virtualenv the first time;
    NotSupported with the reason when that cannot be done."""
    python = VENV / "bin" / "python"
    if python.exists() and _imports_oban(python):
        return python
    if not Path(PYTHON312).exists():
        raise NotSupported(f"Oban needs Python >= 3.12; {PYTHON312} not found")
    steps = [
        [PYTHON312, "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", "-q", "oban", "psycopg[binary]"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NotSupported(
                f"cannot set up Oban's Python 3.12 env ({' '.join(step)}): "
                f"{(done.stderr or done.stdout).strip()[-500:]}"
            )
    if not _imports_oban(python):
        raise NotSupported("oban installed in bench/.venv-oban-3.12 but does not import")
    return python


def _imports_oban(python: Path) -> bool:
    done = subprocess.run(
        [str(python), "-c", "import oban, psycopg"], capture_output=True, check=False
    )
    return done.returncode == 0


class ObanPeer(Peer):
    name = "Oban (Python)"
    store = "postgresql"

    def __init__(self, dsn: str | None = None, limit: int = LIMIT, batch: int = BATCH) -> None:
        self.dsn = dsn
        self.limit = limit
        self.batch = batch
        self.db: pgutil.ThrowawayDatabase | None = None
        self.python: Path | None = None
        self.versions = ""
        #: Details of the last drain/sleep run (seconds), for the report.
        self.details: dict[str, Any] = {}

    def configuration(self) -> str:
        return (
            f"{self.versions or 'oban'} (pool) on Python 3.12; each worker process `oban start --queues default:{self.limit}`; W workers "
            "x P processes = W*P processes; I/O scenario: 1 process, queue limit P, "
            f"asyncio.sleep; bulk: enqueue_many of {self.batch} jobs (one INSERT per job, "
            "one transaction); throw-away database"
        )

    # -- lifecycle -------------------------------------------------------------------

    def setup(self) -> None:
        self.python = ensure_venv()
        self.versions = subprocess.run(
            [
                str(self.python),
                "-c",
                "from importlib.metadata import version as v;"
                "print(f\"oban {v('oban')}, psycopg {v('psycopg')}\")",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.db = pgutil.ThrowawayDatabase("oban", self.dsn)
        self.db.create()
        self._run("install")

    def teardown(self) -> None:
        if self.db is not None:
            self.db.drop()
            self.db = None

    # -- helpers ---------------------------------------------------------------------

    def _run(self, operation: str, **options: Any) -> dict:
        if self.python is None or self.db is None:
            raise RuntimeError("setup() was not called")
        command = [str(self.python), str(RUNNER), operation, "--dsn", self.db.url]
        for key, value in options.items():
            command += [f"--{key}", str(value)]
        done = subprocess.run(
            command,
            cwd=pgutil.REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"oban_runner {operation} failed:\n{done.stderr[-3000:]}")
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[-1])

    def _measure(self, operation: str, **options: Any) -> dict:
        self._run("reset")
        try:
            result = self._run(operation, **options)
        finally:
            self._run("reset")
        self.details = result.get("details", {})
        return result

    # -- measurements ----------------------------------------------------------------

    def enqueue_single(self, count: int) -> float:
        return float(self._measure("enqueue_single", count=count)["rate"])

    def enqueue_bulk(self, count: int) -> float:
        return float(self._measure("enqueue_bulk", count=count, batch=self.batch)["rate"])

    def drain(self, count: int, workers: int, processes: int) -> float:
        result = self._measure(
            "drain",
            count=count,
            processes=workers * processes,
            limit=self.limit,
            batch=self.batch,
        )
        return float(result["rate"])

    def sleep_jobs(self, count: int, seconds: float, processes: int) -> float:
        result = self._measure(
            "sleep", count=count, seconds=seconds, processes=processes, batch=self.batch
        )
        return float(result["seconds"])

    def latency(self, count: int, interval: float) -> Latency:
        result = self._measure("latency", count=count, interval=interval, limit=self.limit)
        return Latency(p50=result["p50"], p95=result["p95"], max=result["max"])


if __name__ == "__main__":  # pragma: no cover - manual smoke test
    peer = ObanPeer(limit=int(sys.argv[1]) if len(sys.argv) > 1 else LIMIT)
    peer.setup()
    try:
        print(peer.configuration())
        print("drain 2000 1x2", peer.drain(2000, 1, 2), peer.details)
    finally:
        peer.teardown()
