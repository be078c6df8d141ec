"""Ref parsing and the JSON form of the records."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tasktrail.errors import InvalidArguments
from tasktrail.job import ACTIVE_STATUSES, FINAL_STATUSES, STATUSES, Event, Outcome, Ref

from .factories import T0, make_job


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (("website", "42"), Ref("website", "42")),
        (("website", 42), Ref("website", "42")),
        (["website", 0], Ref("website", "0")),
        ("website:42", Ref("website", "42")),
        ("url:https://example.com/a", Ref("url", "https://example.com/a")),
        (Ref("a", "b"), Ref("a", "b")),
        (None, None),
    ],
)
def test_ref_of(value: object, expected: Ref | None) -> None:
    assert Ref.of(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (("", "1"), "ref type must be a non-empty string"),
        ((5, "1"), "ref type must be a non-empty string"),
        (("website", True), "ref id must be a string or an integer"),
        (("website", 1.5), "ref id must be a string or an integer"),
        (("website", None), "ref id must be a string or an integer"),
        (("website", ""), "ref id must not be empty"),
        (("website", "1", "2"), r"ref must be a \(type, id\) pair"),
        (("website",), r"ref must be a \(type, id\) pair"),
        (42, r"ref must be a \(type, id\) pair"),
        ({"website": 42}, r"ref must be a \(type, id\) pair"),
        (("w" * 201, "1"), "ref type is longer than 200 characters"),
        (("website", "1" * 201), "ref id is longer than 200 characters"),
        (("web\x00site", "1"), "ref type must not contain NUL"),
        (("website", "4\x002"), "ref id must not contain NUL"),
    ],
)
def test_ref_of_refuses(value: object, message: str) -> None:
    with pytest.raises(InvalidArguments, match=message):
        Ref.of(value)  # type: ignore[arg-type]


def test_ref_at_the_length_limit_is_accepted() -> None:
    assert Ref.of(("t" * 200, "i" * 200)) == Ref("t" * 200, "i" * 200)


@pytest.mark.parametrize("text", ["website", ":42", "website:", "", ":"])
def test_ref_parse_refuses(text: str) -> None:
    with pytest.raises(InvalidArguments, match="ref must look like 'type:id'"):
        Ref.parse(text)


def test_ref_parse_splits_at_the_first_colon_and_prints_back() -> None:
    ref = Ref.parse("kpi:site:42")
    assert ref == Ref("kpi", "site:42")
    assert str(ref) == "kpi:site:42"
    assert Ref.parse(str(ref)) == ref


def test_job_to_dict_uses_the_column_names() -> None:
    job = make_job(
        ref=Ref("website", "42"),
        finished_at=T0 + timedelta(seconds=3),
        status="succeeded",
        result={"n": 1},
    )
    data = job.to_dict()
    assert list(data) == [
        "id", "task", "queue", "status", "ref_type", "ref_id", "priority", "args", "kwargs",
        "attempts", "max_attempts", "timeout", "run_at", "created_at", "started_at",
        "finished_at", "worker_id", "worker_name", "result", "error", "unique_key",
        "lock_key", "cancel_requested_at", "parent_id", "root_id", "waiting_for",
        "after_policy", "lock_limit", "rate_key", "rate_limit", "rate_window",
    ]  # fmt: skip
    assert data["ref_type"] == "website"
    assert data["ref_id"] == "42"
    assert data["run_at"] == "2030-01-01T12:00:00+00:00"
    assert data["finished_at"] == "2030-01-01T12:00:03+00:00"
    assert json.loads(json.dumps(data)) == data
    assert job.is_final


def test_job_without_ref_or_times() -> None:
    data = make_job(status="queued", started_at=None).to_dict()
    assert data["ref_type"] is None
    assert data["ref_id"] is None
    assert data["started_at"] is None
    assert not make_job(status="queued").is_final


def test_event_to_dict() -> None:
    event = Event(1, 7, T0, "started", 1, 3, "w", "host", 99, {"x": 1}, child_pid=100)
    assert event.to_dict() == {
        "id": 1,
        "job_id": 7,
        "at": "2030-01-01T12:00:00+00:00",
        "kind": "started",
        "attempt": 1,
        "worker_id": 3,
        "worker_name": "w",
        "host": "host",
        "pid": 99,
        "child_pid": 100,
        "detail": {"x": 1},
    }


def test_outcome_detail_json_is_compact() -> None:
    outcome = Outcome(1, 1, "succeeded", T0, detail={"runtime": 0.5, "é": "ü"})
    assert json.loads(outcome.detail_json()) == {"runtime": 0.5, "é": "ü"}
    assert " " not in outcome.detail_json()
    assert Outcome(1, 1, "succeeded", T0).detail == {}


def test_status_sets_partition_the_statuses() -> None:
    assert set(STATUSES) == ACTIVE_STATUSES | FINAL_STATUSES
    assert not ACTIVE_STATUSES & FINAL_STATUSES
