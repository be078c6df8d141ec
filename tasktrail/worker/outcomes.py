"""Turning what happened to a child into an :class:`~tasktrail.job.Outcome`.

Pure functions: the supervisor feeds them a job, a child's message or exit status, the
retry policy and the time, and records what they return.
"""

from __future__ import annotations

import os
import random
import signal
from datetime import datetime
from typing import Any

from ..job import HeldJob, Job, Outcome
from ..retry import RetryPolicy
from .child import MALFORMED_ERROR

__all__ = [
    "StopReason",
    "cancelled_before_start",
    "describe_exit",
    "malformed",
    "not_started",
    "outcome_from_exit",
    "outcome_from_message",
]

#: Why the supervisor signalled a child that was running a job.
StopReason = str  # "timeout" | "shutdown" | "cancel"


def describe_exit(wait_status: int) -> tuple[str, dict[str, Any]]:
    """A sentence and a detail dict for a child's ``waitpid`` status."""
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}", {"signal": name}
    code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else wait_status
    return f"exited with status {code}", {"exit_code": code}


def _failure(
    job: HeldJob | Job,
    attempt: int,
    kind: str,
    error: str,
    detail: dict[str, Any],
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random | None,
    child_pid: int | None,
) -> Outcome:
    retry_at = policy.next_run_at(attempt, job.max_attempts, now, rng)
    return Outcome(
        job_id=job.id,
        attempt=attempt,
        kind=kind,  # type: ignore[arg-type]
        finished_at=now,
        error=error,
        retry_at=retry_at,
        detail=detail,
        child_pid=child_pid,
    )


def outcome_from_message(
    job: HeldJob | Job,
    attempt: int,
    message: dict[str, Any],
    policy: RetryPolicy,
    now: datetime,
    rng: random.Random | None = None,
    child_pid: int | None = None,
) -> Outcome:
    """The outcome the child ``child_pid`` reported for ``job``."""
    runtime = round(float(message.get("runtime") or 0.0), 6)
    if message.get("ok"):
        return Outcome(
            job_id=job.id,
            attempt=attempt,
            kind="succeeded",
            finished_at=now,
            result_json=message["result"],
            detail={"runtime": runtime},
            child_pid=child_pid,
        )
    if message.get("reason") == "malformed":
        return malformed(job, attempt, now, child_pid)
    if message.get("reason") == "cancelled":  # it never began: a cancel reached it first
        return cancelled_before_start(job, attempt, now)
    detail: dict[str, Any] = {"runtime": runtime, "reason": message.get("reason", "error")}
    if message.get("traceback"):
        detail["traceback"] = message["traceback"]
    error = str(message.get("error"))
    return _failure(job, attempt, "failed", error, detail, policy, now, rng, child_pid)


def malformed(
    job: HeldJob | Job, attempt: int, now: datetime, child_pid: int | None = None
) -> Outcome:
    """The outcome of a job whose stored arguments are not a JSON array and object (a row
    written by hand): it fails for good; its child found that out and ran nothing."""
    return Outcome(
        job.id,
        attempt,
        "failed",
        now,
        error=MALFORMED_ERROR,
        detail={"reason": "malformed"},
        child_pid=child_pid,
    )


def cancelled_before_start(job: HeldJob | Job, attempt: int, now: datetime) -> Outcome:
    """The outcome of a job whose cancel reached its worker before any child began it."""
    return Outcome(
        job.id,
        attempt,
        "cancelled",
        now,
        error="cancelled before it started",
        detail={"reason": "cancel requested before it started"},
    )


def not_started(job: HeldJob | Job, attempt: int, why: str, now: datetime) -> Outcome:
    """The outcome of a job that was started in the database but never began in a child
    (its process died first, or the worker stopped): queued again, attempt given back."""
    return Outcome(job.id, attempt, "interrupted", now, detail={"reason": why})


def outcome_from_exit(
    job: HeldJob | Job,
    attempt: int,
    wait_status: int,
    stop_reason: StopReason | None,
    policy: RetryPolicy,
    now: datetime,
    runtime: float,
    rng: random.Random | None = None,
    child_pid: int | None = None,
) -> Outcome | None:
    """The outcome for a job whose child process (``child_pid``) ended before reporting
    one.

    Returns ``None`` when nothing must be recorded (the worker abandoned the job).
    """
    how, detail = describe_exit(wait_status)
    detail["runtime"] = round(runtime, 6)
    if stop_reason == "timeout":
        detail["timeout"] = job.timeout
        return _failure(
            job,
            attempt,
            "timeout",
            f"timed out after {job.timeout:g}s ({how})",
            detail,
            policy,
            now,
            rng,
            child_pid,
        )
    if stop_reason == "shutdown":
        detail["reason"] = "worker shutdown"
        return Outcome(job.id, attempt, "interrupted", now, detail=detail, child_pid=child_pid)
    if stop_reason == "cancel":
        detail["reason"] = "cancel requested"
        return Outcome(
            job.id,
            attempt,
            "cancelled",
            now,
            error="cancelled while running",
            detail=detail,
            child_pid=child_pid,
        )
    if stop_reason == "abandon":
        return None
    detail["reason"] = "crashed"
    return _failure(
        job,
        attempt,
        "failed",
        f"worker process {how} while running the job",
        detail,
        policy,
        now,
        rng,
        child_pid,
    )
