"""tasktrail.lifecycle: valid paths pass check_history, broken ones are named; the
machine is walked, asked and drawn."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tasktrail.job import EVENT_KINDS
from tasktrail.lifecycle import (
    DIAGRAM_BEGIN,
    DIAGRAM_END,
    TRANSITIONS,
    UNCHANGED,
    arrows,
    check_history,
    follow,
    main,
    mermaid,
    sources,
    with_diagram,
)


def history(*steps: str | tuple[str, int]) -> list[SimpleNamespace]:
    """Events from kinds; the attempt is counted like a backend would, unless given."""
    events = []
    attempt = 0
    for step in steps:
        if isinstance(step, tuple):
            kind, explicit = step
        else:
            kind, explicit = step, None
        if kind == "started":
            attempt += 1
        events.append(SimpleNamespace(kind=kind, attempt=attempt if explicit is None else explicit))
    return events


VALID = {
    "succeeded first time": (
        ["enqueued", "reserved", "started", "succeeded"],
        "succeeded",
    ),
    "still queued": (["enqueued"], "queued"),
    "reserved": (["enqueued", "reserved"], "reserved"),
    "running": (["enqueued", "reserved", "started"], "running"),
    "failed finally": (["enqueued", "reserved", "started", "failed"], "failed"),
    "retried after failure and timeout": (
        [
            "enqueued", "reserved", "started", "failed", "retry_scheduled",
            "reserved", "started", "timeout", "retry_scheduled",
            "reserved", "started", "succeeded",
        ],
        "succeeded",
    ),
    "released then run": (
        ["enqueued", "reserved", "released", "reserved", "started", "succeeded"],
        "succeeded",
    ),
    "lost while reserved": (["enqueued", "reserved", "lost", "reserved"], "reserved"),
    "lost while running, retried": (
        ["enqueued", "reserved", "started", "lost", "retry_scheduled", "reserved", "started"],
        "running",
    ),
    "lost while running, final": (["enqueued", "reserved", "started", "lost"], "failed"),
    "interrupted by shutdown": (
        ["enqueued", "reserved", "started", "interrupted", "reserved", "started", "succeeded"],
        "succeeded",
    ),
    "cancelled while queued": (["enqueued", "cancelled"], "cancelled"),
    "cancelled while reserved": (["enqueued", "reserved", "cancelled"], "cancelled"),
    "cancelled while running": (["enqueued", "reserved", "started", "cancelled"], "cancelled"),
    "retried by a person after failure": (
        ["enqueued", "reserved", "started", "failed", "retried", "reserved", "started"],
        "running",
    ),
    "retried by a person after cancel": (["enqueued", "cancelled", "retried"], "queued"),
    "late outcome rejected": (
        [
            "enqueued", "reserved", "started", "lost", "retry_scheduled", "reserved",
            ("outcome_rejected", 1), "started", "succeeded", ("outcome_rejected", 1),
        ],
        "succeeded",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("kinds", "status"), VALID.values(), ids=list(VALID))
def test_valid_histories(kinds: list[str | tuple[str, int]], status: str) -> None:
    assert check_history(history(*kinds), status) == []
    assert check_history(history(*kinds)) == []


def test_no_events() -> None:
    assert check_history([]) == ["no events"]


def test_first_event_must_be_enqueued() -> None:
    assert check_history(history("reserved"), "queued") == [
        "first event is 'reserved', not 'enqueued'"
    ]


@pytest.mark.parametrize(
    ("kinds", "problem"),
    [
        (["enqueued", "started", "started"], "event 2 'started' is not allowed when running"),
        (["enqueued", "succeeded"], "event 1 'succeeded' is not allowed when queued"),
        (
            ["enqueued", "reserved", "started", "succeeded", "retried"],
            "event 4 'retried' is not allowed when succeeded",
        ),
        (
            ["enqueued", "reserved", "started", "succeeded", "reserved"],
            "event 4 'reserved' is not allowed when succeeded",
        ),
        (["enqueued", "reserved", "reserved"], "event 2 'reserved' is not allowed when reserved"),
        (["enqueued", "reserved", "succeeded"], "event 2 'succeeded' is not allowed when reserved"),
        (["enqueued", "reserved", "retry_scheduled"], "'retry_scheduled' is not allowed when reserved"),
        (["enqueued", "retried"], "event 1 'retried' is not allowed when queued"),
        (["enqueued", "released"], "event 1 'released' is not allowed when queued"),
        (["enqueued", "reserved", "started", "released"], "'released' is not allowed when running"),
        (["enqueued", "lost"], "event 1 'lost' is not allowed when queued"),
        (["enqueued", "enqueued"], "event 1 'enqueued' is not allowed when queued"),
        (["enqueued", "bogus"], "event 1 'bogus' is not allowed when queued"),
    ],
)  # fmt: skip
def test_invalid_transitions_are_named(kinds: list[str], problem: str) -> None:
    problems = check_history(history(*kinds))
    assert any(problem in p for p in problems), problems


def test_a_job_claimed_straight_into_a_process_has_no_reserved_event() -> None:
    events = history("enqueued", "started", "succeeded")
    assert check_history(events, "succeeded") == []


def test_wrong_attempt_numbers_are_found() -> None:
    events = history("enqueued", "reserved", "started", ("succeeded", 2))
    assert check_history(events, "succeeded") == ["event 3 'succeeded' says attempt 2, expected 1"]
    events = history("enqueued", ("reserved", 1))
    assert check_history(events) == ["event 1 'reserved' says attempt 1, expected 0"]


def test_attempts_keep_counting_across_retries() -> None:
    events = history(
        "enqueued", "reserved", "started", "failed", "retry_scheduled",
        "reserved", ("started", 1),
    )  # fmt: skip
    assert check_history(events) == ["event 6 'started' says attempt 1, expected 2"]


def test_status_must_match_where_the_path_ends() -> None:
    events = history("enqueued", "reserved", "started", "failed", "retry_scheduled")
    assert check_history(events, "failed") == ["history ends 'queued' but the job is 'failed'"]
    assert check_history(events, "queued") == []


def test_several_problems_are_all_reported() -> None:
    events = history(("started", 0), ("reserved", 0), ("succeeded", 0), ("started", 5))
    problems = check_history(events, "succeeded")
    assert problems == [
        "first event is 'started', not 'enqueued'",
        "event 2 'succeeded' is not allowed when reserved",
        "event 3 'started' says attempt 5, expected 1",
        "history ends 'running' but the job is 'succeeded'",
    ]


def test_every_transition_uses_a_known_event_kind_and_state() -> None:
    for state, moves in TRANSITIONS.items():
        for kind, following in moves.items():
            assert kind in EVENT_KINDS, (state, kind)
            assert following in TRANSITIONS, (state, following)


def test_follow_walks_the_arrows_and_names_the_one_missing() -> None:
    assert follow("running", "failed", "retry_scheduled") == "queued"
    assert follow("running", "outcome_rejected", "succeeded") == "succeeded"
    assert follow("queued") == "queued"
    with pytest.raises(ValueError, match="no 'retry_scheduled' arrow out of 'succeeded'"):
        follow("running", "succeeded", "retry_scheduled")
    with pytest.raises(ValueError, match="no 'bogus' arrow out of 'queued'"):
        follow("queued", "bogus")


def test_sources_are_the_statuses_an_event_leaves_in_the_machine_s_order() -> None:
    assert sources("retried") == ("failed", "cancelled")
    assert sources("cancelled") == ("waiting", "queued", "reserved", "running")
    assert sources("enqueued") == ()


def test_arrows_are_every_move_of_the_machine_and_the_first_event() -> None:
    found = arrows()
    assert (None, "enqueued", "queued") in found
    assert ("running", "lost", "failed") in found and ("reserved", "lost", "queued") in found
    assert len(found) == 1 + sum(len(moves) for moves in TRANSITIONS.values())
    assert not any(kind in UNCHANGED for _, kind, _ in found)


def test_the_diagram_draws_every_arrow_once_with_its_kinds() -> None:
    lines = mermaid().splitlines()
    assert lines[:3] == ["```mermaid", "stateDiagram-v2", "    [*] --> queued: enqueued"]
    assert lines[-1] == "```"
    drawn = set()
    for line in lines[3:-1]:
        pair, _, labels = line.strip().partition(": ")
        source, _, target = pair.partition(" --> ")
        drawn.update((source, kind, target) for kind in labels.split(" / ") if labels)
    assert drawn == {arrow for arrow in arrows() if arrow[0] is not None}
    assert "    succeeded --> [*]" in lines and "    running --> [*]" not in lines


def test_the_diagram_is_put_between_the_markers_and_only_there(tmp_path: Path) -> None:
    page = f"# Title\n\n{DIAGRAM_BEGIN}\nold drawing\n{DIAGRAM_END}\n\nText after.\n"
    rendered = with_diagram(page)
    assert rendered == f"# Title\n\n{DIAGRAM_BEGIN}\n{mermaid()}\n{DIAGRAM_END}\n\nText after.\n"
    assert with_diagram(rendered) == rendered
    with pytest.raises(ValueError, match="no lines"):
        with_diagram("# no markers\n")
    doc = tmp_path / "page.md"
    doc.write_text(page, encoding="utf-8")
    assert main([str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == rendered
