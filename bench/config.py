"""Where the benchmark's servers are (environment variables override the defaults)."""

from __future__ import annotations

import os
from pathlib import Path

#: The PostgreSQL database the benchmarks use (each run works in its own schema).
PG_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
#: The Redis server of the Redis-based peers.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
#: The repository root: worker subprocesses get it on PYTHONPATH to import bench.apps.
ROOT = Path(__file__).resolve().parent.parent
