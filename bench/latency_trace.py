"""Where the enqueue → start latency goes, on PostgreSQL: a diagnosis, not a comparison.

    python -m bench.latency_trace [--probes 200] [--interval 0.02]

Runs the latency scenario's probes (``bench.probe``, one every ``interval`` seconds) against
one ``tasktrail worker -p 1`` whose supervisor writes a timestamp at each step of a probe's
path: the wake-up (the notification is readable), the backend's exchange (the claim and
its commit) and the hand-over to the child (its message about to be written). The worker
is the shipped code; this module only wraps a few of its methods, in the worker
process, to take the time. Prints the median and 90th percentile of each leg, and what
the machine itself needs for a ``SELECT 1`` and for an ``INSERT`` + commit at the same
spacing and back to back: with 20 ms between requests the CPUs doze, and every step is
several times slower than in a tight loop.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.config import PG_DSN, ROOT

TRACE_ENV = "TASKTRAIL_BENCH_TRACE"


def _worker(argv: list[str]) -> None:
    """``tasktrail worker`` with timestamps written to the file named by TRACE_ENV."""
    from tasktrail.backends.postgres.backend import PostgresBackend
    from tasktrail.cli import cli
    from tasktrail.worker.pool import Child, ChildPool

    out = Path(os.environ[TRACE_ENV]).open("w", buffering=1)  # noqa: SIM115 - the process's life

    def mark(tag: str) -> None:
        out.write(f"{time.time():.6f} {tag}\n")

    consume = PostgresBackend.consume_wakeups
    exchange = PostgresBackend.exchange
    assign = ChildPool.assign

    def traced_consume(self: PostgresBackend) -> bool:
        mark("wake")
        return consume(self)

    def traced_exchange(self: PostgresBackend, worker_id: int, **kwargs: Any) -> Any:
        mark("claim" if kwargs["claim"] or kwargs["start_ids"] else "outcomes")
        result = exchange(self, worker_id, **kwargs)
        mark("exchanged")
        return result

    def traced_assign(self: ChildPool, child: Child, jobs: list[Any], message: bytes) -> bool:
        mark("dispatched")  # the message is written to the child's socket next
        return assign(self, child, jobs, message)

    PostgresBackend.consume_wakeups = traced_consume  # type: ignore[method-assign]
    PostgresBackend.exchange = traced_exchange  # type: ignore[method-assign]
    ChildPool.assign = traced_assign  # type: ignore[method-assign]
    cli.main(args=argv, prog_name="tasktrail")  # exits with its status


def _spaced(call: Callable[[], object], count: int, interval: float) -> list[float]:
    times = []
    for _ in range(count):
        time.sleep(interval)
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return times


def _tight(call: Callable[[], object], count: int) -> list[float]:
    began = time.perf_counter()
    for _ in range(count):
        call()
    return [(time.perf_counter() - began) / count]


def _row(name: str, values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return f"| {name} | {statistics.median(values) * 1000:.3f} | {p90 * 1000:.3f} |"


def run(probes: int, interval: float) -> None:
    from bench.apps.tasktrail_app import make_app

    schema = f"bench_trace_{secrets.token_hex(4)}"
    dsn = f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}"
    app = make_app(dsn)
    probe = app.get_task("bench.probe")
    trace = Path(tempfile.mkdtemp(prefix="tasktrail-trace-")) / "trace"
    env = {**os.environ, "TASKTRAIL_DSN": dsn, TRACE_ENV: str(trace), "PYTHONPATH": str(ROOT)}
    argv = ["worker", "--app", "bench.apps.tasktrail_app:app", "-p", "1", "--quiet"]
    admin = psycopg.connect(PG_DSN, autocommit=True)
    worker = None
    try:
        app.backend  # noqa: B018 - create the schema before the worker starts
        worker = subprocess.Popen(
            [sys.executable, "-m", "bench.latency_trace", "--worker", *argv],
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not admin.execute(
            f'SELECT count(*) FROM "{schema}".workers WHERE status = %s',  # noqa: S608 - our name
            ("running",),
        ).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the traced worker did not start")
            time.sleep(0.05)
        time.sleep(0.5)  # its children are forked and waiting
        sent = []
        start = time.perf_counter()
        for index in range(probes):
            delay = start + index * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            before = time.time()
            handle = probe.enqueue(before)
            sent.append((handle.id, before, time.time()))
        deadline = time.monotonic() + 30
        while admin.execute(
            f'SELECT count(*) FROM "{schema}".jobs WHERE status <> %s',  # noqa: S608 - our name
            ("succeeded",),
        ).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() > deadline:
                raise RuntimeError("the probes did not all succeed")
            time.sleep(0.05)
        results = dict(
            admin.execute(f'SELECT id, result::text FROM "{schema}".jobs').fetchall()  # noqa: S608
        )
        machine = {
            "SELECT 1": lambda: admin.execute("SELECT 1").fetchall(),
            "INSERT + commit": lambda: admin.execute(
                f'INSERT INTO "{schema}".raw_insert_probe DEFAULT VALUES'
            ),
        }
        admin.execute(f'CREATE TABLE "{schema}".raw_insert_probe (id bigserial PRIMARY KEY)')
        spaced = {name: _spaced(call, 100, interval) for name, call in machine.items()}
        tight = {name: _tight(call, 500) for name, call in machine.items()}
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        app.close()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()

    marks = sorted(
        (float(at), tag) for at, tag in (line.split() for line in trace.read_text().splitlines())
    )

    def first(tag: str, after: float | None) -> float | None:
        if after is None:
            return None
        return next((at for at, seen in marks if seen == tag and at >= after), None)

    legs: dict[str, list[float]] = {
        name: []
        for name in (
            "enqueue: task.enqueue() returns (its commit)",
            "enqueue call → worker woken (notification readable)",
            "woken → claim sent (supervisor)",
            "claim: the exchange statement and its commit",
            "claim returned → job handed to the child (supervisor)",
            "handed over → task begins (child)",
            "total: enqueue call → task begins",
        )
    }
    rows = list(legs.values())
    unmatched = 0
    for job_id, before, after in sent[5:]:  # the first probes warm the worker up
        woke = first("wake", before)
        claim = first("claim", woke)
        exchanged = first("exchanged", claim)
        dispatched = first("dispatched", exchanged)
        if woke is None or claim is None or exchanged is None or dispatched is None:
            unmatched += 1  # claimed by a poll, not a wake-up: no path to time
            continue
        began = before + float(results[job_id])
        for values, seconds in zip(
            rows,
            (after - before, woke - before, claim - woke, exchanged - claim,
             dispatched - exchanged, began - dispatched, began - before),
            strict=True,
        ):  # fmt: skip
            values.append(seconds)
    timed = len(legs["total: enqueue call → task begins"])
    print(
        f"{probes} probes {interval * 1000:g} ms apart, one worker with one process; "
        f"{timed} timed (the first 5 warm up; {unmatched} without a wake-up path)"
    )
    print("\n| leg | p50 (ms) | p90 (ms) |\n|:---|---:|---:|")
    for name, values in legs.items():
        print(_row(name, values))
    for name in machine:
        print(_row(f"machine: {name}, {interval * 1000:g} ms apart", spaced[name]))
        print(_row(f"machine: {name}, back to back", tight[name]))


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        _worker(sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m bench.latency_trace", description=__doc__)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.020)
    args = parser.parse_args()
    run(args.probes, args.interval)


if __name__ == "__main__":
    main()
