"""Shared by the Celery, RQ and Huey drivers: worker subprocesses and store polling.

Workers run as real subprocesses of their own command line tools, each in its own process
group, so that stopping them ends the children they fork (and nothing else).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bench.peers.base import Latency

#: The repository root: workers run from it so that ``bench.apps.*`` imports.
REPO_ROOT = Path(__file__).resolve().parents[2]


_LIBC = ctypes.CDLL(None) if sys.platform == "linux" else None


def die_with_parent() -> None:  # runs in the child between fork and exec
    """Have Linux send SIGTERM to the worker if the driver dies (even if killed)."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def redis_url(db: int) -> str:
    """The benchmark's Redis server (``BENCH_REDIS_URL``) with database number ``db``: each
    Redis-based driver has a database of its own, which it flushes."""
    from urllib.parse import urlsplit, urlunsplit

    from bench.config import REDIS_URL

    parts = urlsplit(REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{db}"))


def tool(name: str) -> str:
    """The console script ``name`` installed next to this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed in {path.parent} (pip install .[bench])")
    return str(path)


def stop_groups(
    procs: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM, grace: float = 10.0
) -> None:
    """Stop worker subprocesses, each the leader of its own process group: ``sig`` to
    every group, up to ``grace`` seconds for the leaders to exit, then SIGKILL of every
    group (a pool child may outlive its parent). Empties ``procs``."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(5)
    procs.clear()


class Workers:
    """Worker subprocesses started together and stopped together."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = {**os.environ, **(env or {})}
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self._logdir = Path(tempfile.mkdtemp(prefix="bench-workers-"))

    def start(self, argv: Sequence[str]) -> None:
        log = self._logdir / f"worker-{len(self.procs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.procs.append(
                subprocess.Popen(
                    list(argv),
                    cwd=REPO_ROOT,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    # prctl only, between fork and exec: no lock is taken there.
                    preexec_fn=die_with_parent,  # noqa: PLW1509
                )
            )

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {proc.args} exited with {proc.returncode}:\n{tail}")

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        stop_groups(self.procs, sig, grace)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(
    done: Callable[[], bool],
    timeout: float,
    workers: Workers | None = None,
    interval: float = 0.002,
    what: str = "the jobs",
) -> float:
    """Poll ``done`` until true; return the ``perf_counter`` time it was first seen true."""
    deadline = time.monotonic() + timeout
    checks = 0
    while True:
        if done():
            return time.perf_counter()
        checks += 1
        if workers is not None and checks % 500 == 0:
            workers.check_alive()
        if time.monotonic() > deadline:
            if workers is not None:
                workers.check_alive()
            raise TimeoutError(f"{what} did not finish within {timeout:.0f} s")
        time.sleep(interval)


def latency_of(enqueued: Mapping[int, float], started: Mapping[int, float]) -> Latency:
    """Enqueue→start latencies of the jobs, both maps keyed by job index (``time.time()``)."""
    missing = set(enqueued) - set(started)
    if missing:
        raise RuntimeError(f"{len(missing)} jobs never recorded their start")
    delays = sorted(started[i] - enqueued[i] for i in enqueued)
    p95 = (
        statistics.quantiles(delays, n=100, method="inclusive")[94]
        if len(delays) > 1
        else delays[0]
    )
    return Latency(p50=statistics.median(delays), p95=p95, max=delays[-1])


def paced(interval: float) -> Callable[[int], None]:
    """A function that sleeps until job ``i`` is due, ``interval`` seconds after job ``i-1``."""
    start = time.perf_counter()

    def wait(i: int) -> None:
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    return wait
