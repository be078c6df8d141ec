"""The forked child process: receive a job, run it, send the outcome back.

A child never opens a connection for the queue and never writes job state: it reports
one outcome message per job and the supervisor records it. It ignores SIGINT (Ctrl-C is
the supervisor's to handle), turns SIGTERM into an exception so ``finally`` blocks run,
dies with its supervisor (``PR_SET_PDEATHSIG`` on Linux) and always leaves with
``os._exit`` so nothing inherited from the supervisor is flushed or closed twice.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections import deque
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from .. import payload
from ..context import JobContext, _set_current
from ..errors import InvalidPayload
from ..job import Ref
from ..tracing import attached
from .protocol import recv_message, send_message

if TYPE_CHECKING:
    from ..app import App

__all__ = ["MALFORMED_ERROR", "Terminated", "child_main", "run_job"]

MALFORMED_ERROR = "malformed job data: args must be a JSON array and kwargs a JSON object"

_PR_SET_PDEATHSIG = 1


class Terminated(BaseException):
    """Raised inside a running task when its child process gets SIGTERM.

    A BaseException, so ``except Exception`` in task code does not swallow it.
    """


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"received signal {signum}")


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def run_job(app: App, message: dict[str, Any]) -> dict[str, Any]:
    """Run one job message and return the outcome message. Never raises ``Exception``."""
    job_id = message["job"]
    started = time.perf_counter()

    def failure(error: str, reason: str, tb: str | None = None) -> dict[str, Any]:
        return {
            "job": job_id,
            "ok": False,
            "error": error,
            "reason": reason,
            "traceback": tb,
            "runtime": time.perf_counter() - started,
        }

    try:
        args, kwargs = json.loads(message["args"]), json.loads(message["kwargs"])
    except (TypeError, ValueError):
        args = kwargs = None
    if type(args) is not list or type(kwargs) is not dict:
        # A row written by hand, not through enqueue: this job fails, nothing runs.
        return failure(MALFORMED_ERROR, "malformed")
    task = app.tasks.get(message["task"])
    if task is None:
        return failure(f"unknown task {message['task']!r}", "unknown_task")
    ref = message.get("ref")
    _set_current(
        JobContext(
            job_id, message["attempt"], task.name, Ref(ref[0], ref[1]) if ref else None,
            app.after_results,
        )
    )  # fmt: skip
    try:
        with attached(message.get("trace")):
            result = task.func(*args, **kwargs)
            if inspect.iscoroutine(result):
                import asyncio  # (only where a task is async)

                # an async def task: an event loop of its own for this job (tasks it
                # starts and leaves running are cancelled when it ends, as asyncio.run
                # does)
                result = asyncio.run(result)
    except Terminated:
        raise
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from a task are failures
        return failure(f"{type(exc).__name__}: {exc}", "error", traceback.format_exc())
    finally:
        _set_current(None)
    try:
        result_json = payload.encode(result, f"result of {task.name}")
    except InvalidPayload as exc:
        return failure(str(exc), "bad_result")
    return {
        "job": job_id,
        "ok": True,
        "result": result_json,
        "runtime": time.perf_counter() - started,
    }


def _cancelled_before_start(job_id: int) -> dict[str, Any]:
    return {
        "job": job_id,
        "ok": False,
        "reason": "cancelled",
        "error": "cancelled before it started",
        "runtime": 0.0,
    }


def child_main(app: App, sock: socket.socket, parent_pid: int, max_tasks: int | None) -> NoReturn:
    """The body of a child process; never returns.

    Jobs arrive in batches (one message each) and queue up locally; before starting the next one,
    the child reads whatever else has arrived, so that a ``{"cancel": id}`` for a job it
    holds but has not begun is seen in time (it reports that job cancelled instead).
    """
    status = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _die_with_parent(parent_pid)
        queue: deque[dict[str, Any]] = deque()
        skip: set[int] = set()
        done = 0
        closed = False
        ended: float | None = None  # when the last job ended, if another was queued
        while max_tasks is None or done < max_tasks:
            # Block for a message only when there is nothing to run.
            while not closed and (not queue or select.select([sock], [], [], 0)[0]):
                if not queue:
                    ended = None  # waiting for work is not the child's own cost
                message = recv_message(sock)
                if message is None:  # the supervisor closed our socket
                    closed = True
                elif "cancel" in message:
                    skip.add(message["cancel"])
                else:
                    queue.extend(message["jobs"])
            if not queue:
                break
            job = queue.popleft()
            if job["job"] in skip:
                skip.discard(job["job"])
                send_message(sock, _cancelled_before_start(job["job"]))
            else:
                began = time.perf_counter()
                outcome = run_job(app, job)
                if ended is not None:
                    # from the end of the job before to this one's start: what a job
                    # costs this child on top of its own run time (see JobFlow.depth)
                    outcome["gap"] = began - ended
                ended = time.perf_counter()
                send_message(sock, outcome)
            done += 1
    except Terminated:
        status = 128 + signal.SIGTERM
    except BrokenPipeError:
        status = 1  # the supervisor is gone; nobody to report to
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)
