"""Task functions run by the integration tests in real, forked workers.

The worker subprocess imports this module with ``--app tests.integration.tasks:app``
and takes its DSN from ``TASKTRAIL_DSN``. The test process imports it too, to enqueue
jobs (after pointing ``app`` at the test's database with ``app.configure``).

Tasks that need to be seen from outside write JSON lines to a file the test names:
one ``write`` per line on a file opened with ``O_APPEND``, so lines from concurrent
children never interleave. Monotonic times are comparable across processes on Linux
(``CLOCK_MONOTONIC`` is system-wide).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any

import tasktrail

app = tasktrail.App()

#: Retry delays short enough that a retried job runs again within a poll or two.
FAST_RETRY: dict[str, Any] = {"retry_delay": 0.05, "retry_backoff": 2.0, "retry_jitter": 0.25}

#: How long a blocked task waits for its gate before giving up (a safety net only).
GATE_TIMEOUT = 60.0


def _attempt() -> tuple[int, int]:
    job = tasktrail.current_job()
    if job is None:
        raise RuntimeError("not running in a worker")
    return job.job_id, job.attempt


def append_line(path: str, record: dict[str, Any]) -> None:
    """Append one JSON line with a single ``write`` (atomic under ``O_APPEND``)."""
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_lines(path: str) -> list[dict[str, Any]]:
    """Every line a task appended to ``path`` (none if it does not exist yet)."""
    try:
        with open(path, encoding="utf-8") as file:
            return [json.loads(line) for line in file if line.strip()]
    except FileNotFoundError:
        return []


# -- plain tasks -------------------------------------------------------------------


@app.task(name="fan_out")
def fan_out(refs: list[str], leaves: int = 0) -> list[int]:
    """A follow-up per ref (from the task's own process), each of which enqueues
    ``leaves`` more: a tree of work under the job that runs this."""
    return [spawn_leaves.enqueue(leaves, ref=text).id for text in refs]


@app.task(name="spawn_leaves")
def spawn_leaves(count: int) -> list[int]:
    return [noop.enqueue().id for _ in range(count)]


@app.task(name="count_then_sum")
def count_then_sum(values: list[int], fail_one: bool = False) -> list[int]:
    """Fan-out then fan-in: a ``square`` job per value (from the task's own process) and a
    ``total`` job that waits for all of them; with ``fail_one``, the first square fails
    (the total is then cancelled)."""
    squares = app.enqueue_many(
        square.prepare(value, fail=fail_one and index == 0) for index, value in enumerate(values)
    )
    total.enqueue(after=squares)
    return [handle.id for handle in squares]


@app.task(name="square")
def square(value: int, fail: bool = False) -> int:
    if fail:
        raise ValueError(f"no square of {value} today")
    time.sleep(0.05)
    return value * value


@app.task(name="total")
def total() -> dict[str, Any]:
    """The sum of the results of the jobs it waited for, and how many there were."""
    job = tasktrail.current_job()
    assert job is not None
    results = job.after_results()
    return {"jobs": sorted(results), "sum": sum(results.values())}


@app.task(name="limited_sleep", concurrency=2)
def limited_sleep(index: int, seconds: float) -> int:
    """A call to a slow third-party system that allows two at once, fleet-wide."""
    time.sleep(seconds)
    return index


@app.task(name="rated_call", rate="4/s")
def rated_call(index: int) -> int:
    """A call to a site that allows four requests a second, fleet-wide."""
    time.sleep(0.01)
    return index


@app.task(name="echo")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Any arguments, returned as they came."""
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="noop")
def noop() -> None:
    return None


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="record")
def record(path: str, seconds: float = 0.0) -> int:
    """Run for ``seconds`` and append one line: job, attempt, pid, start and end times."""
    job_id, attempt = _attempt()
    start, wall_start = time.monotonic(), time.time()
    if seconds:
        time.sleep(seconds)
    append_line(
        path,
        {
            "job": job_id,
            "attempt": attempt,
            "pid": os.getpid(),
            "start": start,
            "end": time.monotonic(),
            "wall_start": wall_start,
            "wall_end": time.time(),
        },
    )
    return job_id


@app.task(name="record_or_exit")
def record_or_exit(path: str, exit_code: int = 0) -> int:
    """``record``, quick; or with ``exit_code``, the child process exits at once."""
    if exit_code:
        os._exit(exit_code)
    return record(path)


def _block(path: str, gate: str) -> int:
    job_id, attempt = _attempt()
    append_line(path, {"job": job_id, "attempt": attempt, "pid": os.getpid(), "phase": "start"})
    deadline = time.monotonic() + GATE_TIMEOUT
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} did not open within {GATE_TIMEOUT:g}s")
        time.sleep(0.01)
    append_line(path, {"job": job_id, "attempt": attempt, "pid": os.getpid(), "phase": "end"})
    return attempt


#: Announce the child's pid, then wait until the file ``gate`` exists.
block = app.task(name="block")(_block)
#: The same, with retries: for tests that kill the attempt and expect another one.
block_retried = app.task(name="block_retried", retries=2, **FAST_RETRY)(_block)


@app.task(name="pause")
def pause(path: str, seconds: float, gate: str | None = None) -> int:
    """Announce the start (job, attempt, pid, wall time), run for ``seconds`` and, with
    ``gate``, until that file exists; announce the end. One task for both, so that a
    worker that has learned how long it takes sees a gated one run long."""
    job_id, attempt = _attempt()
    line = {"job": job_id, "attempt": attempt, "pid": os.getpid()}
    append_line(path, {**line, "phase": "start", "wall": time.time()})
    time.sleep(seconds)
    deadline = time.monotonic() + GATE_TIMEOUT
    while gate is not None and not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} did not open within {GATE_TIMEOUT:g}s")
        time.sleep(0.01)
    append_line(path, {**line, "phase": "end", "wall": time.time()})
    return job_id


# -- failing tasks -----------------------------------------------------------------


@app.task(name="async_fetch")
async def async_fetch(path: str, pages: int) -> dict[str, Any]:
    """An async task: awaits several coroutines at once, and knows its job in them."""
    import asyncio

    async def page(index: int) -> int:
        await asyncio.sleep(0.01)
        return index * index

    job_id, attempt = _attempt()
    results = await asyncio.gather(*(page(index) for index in range(pages)))
    append_line(path, {"job": job_id, "attempt": attempt, "pid": os.getpid()})
    return {"job": job_id, "pages": results}


async def double_async(value: int) -> int:
    """A plain async function (not a task), for map."""
    import asyncio

    await asyncio.sleep(0)
    return value * 2


@app.task(name="async_slow", timeout=0.5, retries=1, **FAST_RETRY)
async def async_slow(path: str, seconds: float) -> None:
    """Awaits longer than its timeout; its ``finally`` writes a line."""
    import asyncio

    job_id, attempt = _attempt()
    append_line(path, {"job": job_id, "attempt": attempt, "phase": "start"})
    try:
        await asyncio.sleep(seconds)
    finally:
        append_line(path, {"job": job_id, "attempt": attempt, "phase": "finally"})


@app.task(name="async_fail", retries=1, **FAST_RETRY)
async def async_fail(message: str) -> None:
    import asyncio

    await asyncio.sleep(0)
    raise ValueError(message)


@app.task(name="log_a_line")
def log_a_line(text: str) -> str:
    """Writes a warning through a logger of its own, as a task's code would."""
    logging.getLogger("shop.sync").warning("synced %s", text)
    return text


@app.task(name="fail_always", retries=2, **FAST_RETRY)
def fail_always(message: str = "always fails") -> None:
    raise RuntimeError(message)


@app.task(name="fail_then_succeed", retries=3, **FAST_RETRY)
def fail_then_succeed(failures: int) -> int:
    """Fail the first ``failures`` attempts, then return the attempt number."""
    _, attempt = _attempt()
    if attempt <= failures:
        raise ValueError(f"attempt {attempt} fails on purpose")
    return attempt


def _ignore_sigterm_and_hang() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)


#: Only SIGKILL stops it; its timeout makes the worker do so.
ignore_sigterm_and_hang = app.task(
    name="ignore_sigterm_and_hang", timeout=0.5, retries=1, **FAST_RETRY
)(_ignore_sigterm_and_hang)
#: No timeout: only a worker shutdown (past --grace, then --kill-grace) stops it.
ignore_sigterm_forever = app.task(name="ignore_sigterm_forever")(_ignore_sigterm_and_hang)


@app.task(name="crash")
def crash(code: int = 3) -> None:
    os._exit(code)


@app.task(name="kill_self", retries=1, **FAST_RETRY)
def kill_self(times: int = 1) -> str:
    """SIGKILL our own process on the first ``times`` attempts; then succeed."""
    _, attempt = _attempt()
    if attempt <= times:
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@app.task(name="return_non_json")
def return_non_json() -> Any:
    return {1, 2, 3}


#: Not an App: for the CLI's ``--app`` check.
not_an_app = 42
