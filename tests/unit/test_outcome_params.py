"""The PostgreSQL exchange's outcome documents: the fast path for plain successes gives
exactly what the general path gives (it is only quicker to build)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("psycopg")

from tasktrail.backends.postgres.backend import _add_outcome, _add_success, _outcome_params
from tasktrail.job import Outcome

from .factories import T0

NOW = T0 + timedelta(seconds=5)


def parsed(documents: list[str]) -> list[dict[str, Any]]:
    """The documents with their JSON-text fields decoded, for comparing meaning."""
    out = []
    for document in documents:
        decoded = json.loads(document)
        for key in ("rejected_detail", "detail"):
            if decoded.get(key) is not None:
                decoded[key] = json.loads(decoded[key])
        out.append(decoded)
    return out


@pytest.mark.parametrize(
    "detail", [{"runtime": 0.000123}, {"runtime": 12.5}, {}, {"runtime": 3}, {"runtime": None}]
)
@pytest.mark.parametrize("result", ['{"n": 1}', None, '"caf\u00e9 \\ "q" \\u0000"', "[1e-07]"])
def test_a_plain_success_is_built_as_the_general_path_builds_it(
    detail: dict[str, Any], result: str | None
) -> None:
    outcome = Outcome(7, 2, "succeeded", T0, result_json=result, detail=detail)
    fast_docs: list[str] = []
    fast_events: list[str] = []
    _add_success(outcome, 42, fast_docs, fast_events)
    docs: list[str] = []
    events: list[str] = []
    _add_outcome(outcome, 42, NOW, docs, events)
    assert parsed(fast_docs) == parsed(docs)
    assert parsed(fast_events) == parsed(events)
    assert parsed(fast_docs)[0]["rejected_detail"] == {
        **detail,
        "outcome": "succeeded",
        "worker_id": 42,
    }


def test_other_outcomes_take_the_general_path() -> None:
    failed = Outcome(8, 1, "failed", T0, error="boom", retry_at=T0 + timedelta(seconds=9))
    success = Outcome(9, 1, "succeeded", T0, result_json="null", detail={"runtime": 0.5})
    params = _outcome_params([failed, success], 3, NOW)
    documents = json.loads(params["outcomes"])
    events = json.loads(params["events"])
    assert [d["status"] for d in documents] == ["queued", "succeeded"]
    # a failure that would be retried is final if its job was asked to be cancelled
    assert [d["c_status"] for d in documents] == ["failed", "succeeded"]
    assert [(e["job_id"], e["kind"], e["which"]) for e in events] == [
        (8, "failed", "applied"),
        (8, "retry_scheduled", "applied"),
        (8, "failed", "cancelling"),
        (9, "succeeded", "both"),
    ]
    assert [e["ord"] for e in events] == [0, 1, 2, 3]
