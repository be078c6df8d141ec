"""worker.outcomes: what a child's message or exit status becomes."""

from __future__ import annotations

import os
import random
import signal
from datetime import timedelta

import pytest

from tasktrail.job import Outcome
from tasktrail.retry import RetryPolicy
from tasktrail.worker.outcomes import describe_exit, outcome_from_exit, outcome_from_message

from .factories import T0, make_job

NOW = T0 + timedelta(seconds=10)
POLICY = RetryPolicy(max_attempts=3, base_delay=5, factor=2, jitter=0)


def killed_by(number: int) -> int:
    """A waitpid status for a child killed by a signal."""
    return number


def exited_with(code: int) -> int:
    """A waitpid status for a child that called exit(code)."""
    return code << 8


def test_status_builders_match_the_os_decoding() -> None:
    assert os.WIFSIGNALED(killed_by(9))
    assert os.WTERMSIG(killed_by(9)) == 9
    assert os.WIFEXITED(exited_with(3))
    assert os.WEXITSTATUS(exited_with(3)) == 3


@pytest.mark.parametrize(
    ("status", "text", "detail"),
    [
        (killed_by(signal.SIGKILL), "killed by SIGKILL", {"signal": "SIGKILL"}),
        (killed_by(signal.SIGSEGV), "killed by SIGSEGV", {"signal": "SIGSEGV"}),
        (killed_by(100), "killed by signal 100", {"signal": "signal 100"}),
        (exited_with(3), "exited with status 3", {"exit_code": 3}),
        (exited_with(0), "exited with status 0", {"exit_code": 0}),
    ],
)
def test_describe_exit(status: int, text: str, detail: dict[str, object]) -> None:
    assert describe_exit(status) == (text, detail)


def test_success_message() -> None:
    job = make_job(attempts=2)
    message = {"job": job.id, "ok": True, "result": '{"n":1}', "runtime": 0.1234567891}
    outcome = outcome_from_message(job, 2, message, POLICY, NOW)
    assert outcome == Outcome(
        job_id=job.id,
        attempt=2,
        kind="succeeded",
        finished_at=NOW,
        result_json='{"n":1}',
        detail={"runtime": 0.123457},
    )


def test_error_message_with_attempts_left_schedules_a_retry() -> None:
    job = make_job(max_attempts=3)
    message = {
        "job": job.id,
        "ok": False,
        "error": "ValueError: bad",
        "traceback": "Traceback ...",
        "reason": "error",
        "runtime": 2,
    }
    outcome = outcome_from_message(job, 1, message, POLICY, NOW)
    assert outcome.kind == "failed"
    assert outcome.error == "ValueError: bad"
    assert outcome.retry_at == NOW + timedelta(seconds=5)
    assert outcome.result_json is None
    assert outcome.detail == {"runtime": 2.0, "reason": "error", "traceback": "Traceback ..."}


def test_second_failure_waits_longer() -> None:
    job = make_job(max_attempts=3)
    message = {"ok": False, "error": "boom"}
    outcome = outcome_from_message(job, 2, message, POLICY, NOW)
    assert outcome.retry_at == NOW + timedelta(seconds=10)
    assert outcome.detail == {"runtime": 0.0, "reason": "error"}  # no traceback key


def test_error_on_the_last_attempt_is_final() -> None:
    job = make_job(max_attempts=3)
    outcome = outcome_from_message(job, 3, {"ok": False, "error": "boom"}, POLICY, NOW)
    assert outcome.kind == "failed"
    assert outcome.retry_at is None


def test_the_jobs_max_attempts_decides_not_the_policys() -> None:
    job = make_job(max_attempts=1)
    outcome = outcome_from_message(job, 1, {"ok": False, "error": "x"}, POLICY, NOW)
    assert outcome.retry_at is None


def test_retry_jitter_uses_the_given_random() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=100, jitter=0.5)
    job = make_job(max_attempts=3)
    first = outcome_from_message(job, 1, {"ok": False}, policy, NOW, random.Random(3))
    again = outcome_from_message(job, 1, {"ok": False}, policy, NOW, random.Random(3))
    assert first.retry_at == again.retry_at
    assert first.retry_at is not None
    assert NOW + timedelta(seconds=50) <= first.retry_at <= NOW + timedelta(seconds=150)


def test_timeout_with_attempts_left() -> None:
    job = make_job(timeout=2.5, max_attempts=3)
    outcome = outcome_from_exit(job, 1, killed_by(signal.SIGKILL), "timeout", POLICY, NOW, 2.6)
    assert outcome is not None
    assert outcome.kind == "timeout"
    assert outcome.error == "timed out after 2.5s (killed by SIGKILL)"
    assert outcome.retry_at == NOW + timedelta(seconds=5)
    assert outcome.detail == {"signal": "SIGKILL", "runtime": 2.6, "timeout": 2.5}


def test_timeout_on_the_last_attempt_is_final() -> None:
    job = make_job(timeout=1.0, max_attempts=2)
    outcome = outcome_from_exit(job, 2, killed_by(signal.SIGTERM), "timeout", POLICY, NOW, 1.0)
    assert outcome is not None
    assert (outcome.kind, outcome.retry_at) == ("timeout", None)


def test_shutdown_interrupts_without_blame() -> None:
    job = make_job(max_attempts=1)
    outcome = outcome_from_exit(job, 1, killed_by(signal.SIGTERM), "shutdown", POLICY, NOW, 0.5)
    assert outcome == Outcome(
        job.id,
        1,
        "interrupted",
        NOW,
        detail={"signal": "SIGTERM", "runtime": 0.5, "reason": "worker shutdown"},
    )


def test_cancel_while_running() -> None:
    job = make_job()
    outcome = outcome_from_exit(job, 1, killed_by(signal.SIGTERM), "cancel", POLICY, NOW, 0.5)
    assert outcome is not None
    assert (outcome.kind, outcome.error, outcome.retry_at) == (
        "cancelled",
        "cancelled while running",
        None,
    )
    assert outcome.detail["reason"] == "cancel requested"


def test_abandoned_job_records_nothing() -> None:
    assert outcome_from_exit(make_job(), 1, exited_with(0), "abandon", POLICY, NOW, 0.1) is None


def test_crash_by_signal_is_a_failure_that_can_retry() -> None:
    job = make_job(max_attempts=3)
    outcome = outcome_from_exit(job, 1, killed_by(signal.SIGKILL), None, POLICY, NOW, 0.25)
    assert outcome is not None
    assert outcome.kind == "failed"
    assert outcome.error == "worker process killed by SIGKILL while running the job"
    assert outcome.retry_at == NOW + timedelta(seconds=5)
    assert outcome.detail == {"signal": "SIGKILL", "runtime": 0.25, "reason": "crashed"}


def test_crash_by_exit_code_on_the_last_attempt_is_final() -> None:
    job = make_job(max_attempts=2)
    outcome = outcome_from_exit(job, 2, exited_with(3), None, POLICY, NOW, 1.0)
    assert outcome is not None
    assert outcome.kind == "failed"
    assert outcome.error == "worker process exited with status 3 while running the job"
    assert outcome.retry_at is None
    assert outcome.detail["exit_code"] == 3
