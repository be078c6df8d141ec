"""The PostgreSQL exchange's outcome documents: a plain success is written directly as
JSON text, with what the general path gives for it, less its cancelling variant (the
same) and a separate event (it rides on the document). The statement's side of this is
covered by the backend contract suite (outcomes, fencing, cancel requests)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("psycopg")

from tasktrail.backends.common import new_job_columns
from tasktrail.backends.postgres.backend import (
    _COPY_JOB_TYPES,
    _add_outcome,
    _add_success,
    _outcome_params,
)
from tasktrail.backends.postgres.sql import rendered_queries
from tasktrail.job import NewJob, Outcome

from .factories import T0

NOW = T0 + timedelta(seconds=5)
#: Fields of a document whose absence means "as the applied variant" (c_*) or nothing.
CANCELLING = {"c_status", "c_ended_at", "c_error", "c_run_at", "c_extra_attempts"}


def decoded(document: str) -> dict[str, Any]:
    """A document with its JSON-text fields decoded, for comparing meaning."""
    fields: dict[str, Any] = json.loads(document)
    for key in ("rejected_detail", "detail", "event_detail"):
        if fields.get(key) is not None:
            fields[key] = json.loads(fields[key])
    return fields


@pytest.mark.parametrize(
    "detail", [{"runtime": 0.000123}, {"runtime": 12.5}, {}, {"runtime": 3}, {"runtime": None}]
)
@pytest.mark.parametrize("result", ['{"n": 1}', None, 'caf\u00e9 \\ "q" \\u0000', "[1e-07]"])
def test_a_plain_success_says_what_the_general_path_says(
    detail: dict[str, Any], result: str | None
) -> None:
    outcome = Outcome(7, 2, "succeeded", T0, result_json=result, detail=detail)
    fast: list[str] = []
    _add_success(outcome, 42, fast)
    documents: list[str] = []
    events: list[str] = []
    _add_outcome(outcome, 42, NOW, documents, events)
    [fast_document], [general] = [decoded(d) for d in fast], [decoded(d) for d in documents]
    [event] = [decoded(e) for e in events]

    # the cancelling variant of a success is the success itself: left out
    assert {key: general[key] for key in CANCELLING} == {
        "c_status": general["status"], "c_ended_at": general["ended_at"],
        "c_error": general["error"], "c_run_at": general["run_at"],
        "c_extra_attempts": general["extra_attempts"],
    }  # fmt: skip
    assert not CANCELLING & fast_document.keys()
    # the rest is the same, absent fields being null (or no extra attempt)
    expected = {k: v for k, v in general.items() if k not in CANCELLING}
    assert {k: fast_document.get(k) for k in expected} == {
        **expected,
        "extra_attempts": None,
    } and expected["extra_attempts"] == 0
    # the one event rides on the document
    assert event["which"] == "both"
    assert (fast_document["event"], fast_document["ended_at"], fast_document["event_detail"]) == (
        event["kind"],
        event["at"],
        event["detail"],
    )
    assert fast_document["rejected_detail"] == {**detail, "outcome": "succeeded", "worker_id": 42}


def test_other_outcomes_take_the_general_path() -> None:
    failed = Outcome(8, 1, "failed", T0, error="boom", retry_at=T0 + timedelta(seconds=9))
    success = Outcome(9, 1, "succeeded", T0, result_json="null", detail={"runtime": 0.5})
    params = _outcome_params([failed, success], 3, NOW)
    documents = json.loads(params["outcomes"])
    events = json.loads(params["events"])
    assert [d["status"] for d in documents] == ["queued", "succeeded"]
    # a failure that would be retried is final if its job was asked to be cancelled
    assert [d.get("c_status") for d in documents] == ["failed", None]
    assert [d.get("event") for d in documents] == [None, "succeeded"]
    assert [(e["job_id"], e["kind"], e["which"]) for e in events] == [
        (8, "failed", "applied"),
        (8, "retry_scheduled", "applied"),
        (8, "failed", "cancelling"),
    ]
    assert [e["ord"] for e in events] == [0, 1, 2]


def test_the_enqueue_document_holds_every_field_of_every_job() -> None:
    from tasktrail.backends.postgres.backend import PostgresBackend
    from tasktrail.job import NewJob, Ref

    jobs = [
        NewJob("plain", "default", "[]", "{}", None, 0, 1, None, None),
        NewJob(
            'ta"sk\\é',
            "q\u2028",
            '[1, "x\\u0000"]',
            '{"k": [true]}',
            Ref("web site", "4\t2"),
            -5,
            3,
            2.5,
            T0,
            unique_key='u"1',
            lock_key="l\\1",
        ),
    ]
    document = json.loads(PostgresBackend._insert_params(jobs, NOW)["jobs"])
    assert document == [
        {"ord": 0, "task": "plain", "queue": "default", "priority": 0, "args": "[]",
         "kwargs": "{}", "max_attempts": 1},
        {"ord": 1, "task": 'ta"sk\\é', "queue": "q\u2028", "priority": -5,
         "args": '[1, "x\\u0000"]', "kwargs": '{"k": [true]}', "max_attempts": 3,
         "ref_type": "web site", "ref_id": "4\t2", "timeout": 2.5, "run_at": T0.isoformat(),
         "unique_key": 'u"1', "lock_key": "l\\1"},
    ]  # fmt: skip


def test_the_copy_columns_are_the_new_job_columns_then_the_backends_own() -> None:
    job = NewJob("t", "q", "[]", "{}", None, 0, 1, None, None)
    text = rendered_queries("tasktrail")["copy_jobs"]
    columns = [c.strip() for c in text[text.index("(") + 1 : text.index(")")].split(",")]
    assert columns == [*new_job_columns(job), "id", "status", "run_at", "created_at"]
    assert len(_COPY_JOB_TYPES) == len(columns)
