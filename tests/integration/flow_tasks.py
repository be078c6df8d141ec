"""Tasks of the flow-control integration tests (``test_flow_control.py``).

Two apps, so that periodic jobs fire only where a test asks for them:

* ``app``: tasks with per-object locks, unique keys, and ones that block or fail, for
  ``--app tests.integration.flow_tasks:app``;
* ``periodic_app``: schedules declared in code with ``@periodic_app.periodic``, for
  ``--app tests.integration.flow_tasks:periodic_app``.

Tasks that must be seen from outside append JSON lines to a file the test names (see
``tasks.append_line``); times there are ``time.monotonic()``, comparable across
processes on Linux.
"""

from __future__ import annotations

import os
import time

import tasktrail

from .tasks import GATE_TIMEOUT, append_line

app = tasktrail.App()
periodic_app = tasktrail.App()


def _current() -> tuple[int, int]:
    job = tasktrail.current_job()
    if job is None:
        raise RuntimeError("not running in a worker")
    return job.job_id, job.attempt


def _wait_for_gate(gate: str) -> None:
    deadline = time.monotonic() + GATE_TIMEOUT
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} did not open within {GATE_TIMEOUT:g}s")
        time.sleep(0.01)


# -- app ------------------------------------------------------------------------------


@app.task(name="kpi_refresh", lock="kpi:{kpi_id}")
def kpi_refresh(path: str, kpi_id: int, seconds: float = 0.0, gate: str | None = None) -> int:
    """Refresh one KPI: at most one per KPI at a time. Appends a start and an end line."""
    job_id, attempt = _current()
    line = {"job": job_id, "attempt": attempt, "kpi": kpi_id, "pid": os.getpid()}
    append_line(path, {**line, "phase": "start", "at": time.monotonic()})
    if gate is not None:
        _wait_for_gate(gate)
    if seconds:
        time.sleep(seconds)
    append_line(path, {**line, "phase": "end", "at": time.monotonic()})
    return kpi_id


@app.task(name="website_refresh", unique="website:{website_id}")
def website_refresh(website_id: int, seconds: float = 0.0) -> int:
    """Refresh one website's front page: at most one queued or running per website."""
    if seconds:
        time.sleep(seconds)
    return website_id


@app.task(name="block_retried", retries=2, retry_delay=0.05, retry_jitter=0.0)
def block_retried(path: str, gate: str) -> int:
    """Announce the child's pid, then wait for the file ``gate``. Retried if it fails."""
    job_id, attempt = _current()
    append_line(path, {"job": job_id, "attempt": attempt, "pid": os.getpid(), "phase": "start"})
    _wait_for_gate(gate)
    append_line(path, {"job": job_id, "attempt": attempt, "pid": os.getpid(), "phase": "end"})
    return attempt


@app.task(name="flaky")
def flaky(flag: str) -> str:
    """Fails until the file ``flag`` exists."""
    if not os.path.exists(flag):
        raise RuntimeError(f"{flag} does not exist yet")
    return "ok"


@app.task(name="broken")
def broken() -> None:
    raise RuntimeError("always broken")


@app.task(name="kpi_tick")
def kpi_tick(kpi_id: int) -> int:
    """What schedules added at run time (``tasktrail schedules add``) fire."""
    return kpi_id


# -- periodic_app ---------------------------------------------------------------------


@periodic_app.periodic(every=1, name="every-second", args=[1], ref=("kpi", 1))
def tick(kpi_id: int) -> int:
    return kpi_id


#: Runs longer than its interval: with skip_if_running, the ticks meanwhile are skipped.
SLOW_SECONDS = 2.5


@periodic_app.periodic(every=1, name="slow-skip", args=[SLOW_SECONDS], skip_if_running=True)
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
