"""backends.common: how outcomes map to statements and history events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tasktrail.backends.common import (
    Transition,
    lost_error,
    outcome_events,
    raise_transition_error,
    transition,
)
from tasktrail.errors import InvalidTransition, JobNotFound
from tasktrail.job import Outcome

from .factories import T0

LATER = T0 + timedelta(seconds=5)
RETRY_AT = T0 + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("outcome", "change"),
    [
        (Outcome(1, 1, "succeeded", T0, result_json="[1]"), Transition("succeeded", None, 0)),
        (
            Outcome(1, 1, "failed", T0, error="boom", retry_at=RETRY_AT),
            Transition("queued", RETRY_AT, 0),
        ),
        (
            Outcome(1, 1, "timeout", T0, error="slow", retry_at=RETRY_AT),
            Transition("queued", RETRY_AT, 0),
        ),
        (Outcome(1, 1, "failed", T0, error="boom"), Transition("failed", None, 0)),
        (Outcome(1, 1, "timeout", T0, error="slow"), Transition("failed", None, 0)),
        # an interrupted attempt is requeued at once, in its place (run_at as it was),
        # and given back
        (Outcome(1, 1, "interrupted", T0), Transition("queued", None, 1)),
        (Outcome(1, 1, "cancelled", T0, error="stop"), Transition("cancelled", None, 0)),
    ],
)
def test_transition(outcome: Outcome, change: Transition) -> None:
    assert transition(outcome) == change


def test_transition_refuses_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown outcome kind 'snoozed'"):
        transition(Outcome(1, 1, "snoozed", T0))  # type: ignore[arg-type]


def test_success_event() -> None:
    outcome = Outcome(1, 2, "succeeded", T0, result_json="1", detail={"runtime": 0.5})
    assert outcome_events(outcome, True, 9, LATER) == [(T0, "succeeded", {"runtime": 0.5})]


def test_failure_with_retry_gives_two_events_at_the_finish_time() -> None:
    outcome = Outcome(1, 1, "failed", T0, error="boom", retry_at=RETRY_AT, detail={"x": 1})
    assert outcome_events(outcome, True, 9, LATER) == [
        (T0, "failed", {"x": 1, "error": "boom"}),
        (T0, "retry_scheduled", {"run_at": RETRY_AT.isoformat()}),
    ]


def test_timeout_with_retry_also_schedules() -> None:
    outcome = Outcome(1, 1, "timeout", T0, error="slow", retry_at=RETRY_AT)
    kinds = [kind for _, kind, _ in outcome_events(outcome, True, 9, LATER)]
    assert kinds == ["timeout", "retry_scheduled"]


@pytest.mark.parametrize("kind", ["failed", "timeout"])
def test_final_failure_gives_one_event(kind: str) -> None:
    outcome = Outcome(1, 1, kind, T0, error="boom")  # type: ignore[arg-type]
    assert outcome_events(outcome, True, 9, LATER) == [(T0, kind, {"error": "boom"})]


def test_interrupted_and_cancelled_never_schedule_a_retry() -> None:
    # retry_at is meaningless for these kinds and must not produce retry_scheduled.
    for kind in ("interrupted", "cancelled", "succeeded"):
        outcome = Outcome(1, 1, kind, T0, retry_at=RETRY_AT)  # type: ignore[arg-type]
        assert [k for _, k, _ in outcome_events(outcome, True, 9, LATER)] == [kind]


def test_rejected_outcome_is_one_event_at_now_naming_the_worker() -> None:
    outcome = Outcome(1, 1, "failed", T0, error="boom", retry_at=RETRY_AT, detail={"runtime": 1})
    assert outcome_events(outcome, False, 9, LATER) == [
        (
            LATER,
            "outcome_rejected",
            {"runtime": 1, "error": "boom", "outcome": "failed", "worker_id": 9},
        )
    ]


def test_outcome_detail_is_not_mutated() -> None:
    detail = {"runtime": 1}
    outcome = Outcome(1, 1, "failed", T0, error="boom", detail=detail)
    outcome_events(outcome, True, 9, LATER)
    outcome_events(outcome, False, 9, LATER)
    assert detail == {"runtime": 1}


def test_lost_error_names_the_worker() -> None:
    assert "worker 12 was lost" in lost_error(12)


def test_raise_transition_error() -> None:
    with pytest.raises(JobNotFound, match="no job with id 5"):
        raise_transition_error(5, None, "cancelled")
    with pytest.raises(InvalidTransition, match="job 5 is succeeded; it is already final"):
        raise_transition_error(5, "succeeded", "cancelled")
    with pytest.raises(
        InvalidTransition, match="job 5 is queued; only failed or cancelled jobs can be retried"
    ):
        raise_transition_error(5, "queued", "retried")
