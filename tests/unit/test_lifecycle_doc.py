"""docs/lifecycle.md against the machine it documents: its diagram is the one
``tasktrail.lifecycle.mermaid()`` draws from ``TRANSITIONS``, every status and every
event kind of the machine is described there (with the moves each makes), and nothing
more."""

from __future__ import annotations

import re
from pathlib import Path

from tasktrail.job import STATUSES
from tasktrail.lifecycle import DIAGRAM_BEGIN, DIAGRAM_END, TRANSITIONS, arrows, with_diagram

DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"
#: A row of the event table: | `kind` | moves | written by | meaning |
ROW = re.compile(r"^\| `([a-z_]+)` \| ([^|]+) \|", flags=re.MULTILINE)


def event_section() -> str:
    """The page's section on event kinds (the status table's rows look alike)."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Event kinds\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_every_event_kind_of_the_machine_has_a_row_and_no_other_does() -> None:
    text = event_section()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    kinds = {kind for arrows in TRANSITIONS.values() for kind in arrows}
    kinds |= {"enqueued", "outcome_rejected"}  # the first event, and the one that changes nothing
    assert documented == kinds


def test_every_status_is_named() -> None:
    text = DOC.read_text(encoding="utf-8")
    for status in STATUSES:
        assert f"`{status}`" in text, status


def test_the_diagram_is_the_one_drawn_from_the_machine() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert DIAGRAM_BEGIN in text and DIAGRAM_END in text, "the diagram's marker lines are gone"
    assert with_diagram(text) == text, (
        "docs/lifecycle.md's diagram is not the one lifecycle.TRANSITIONS draws: run "
        "`python -m tasktrail.lifecycle docs/lifecycle.md` and commit the result"
    )


def test_each_event_row_names_the_moves_the_machine_makes() -> None:
    rows = dict(ROW.findall(event_section()))
    for kind, moves in rows.items():
        drawn = set(re.findall(r"`([a-z_]+)` → `([a-z_]+)`", moves))
        expected = {(source, target) for source, k, target in arrows() if k == kind and source}
        assert drawn == expected, (kind, moves)
    assert rows["enqueued"].strip() == "new job → `queued`"
    assert rows["outcome_rejected"].strip() == "any → the same"
