"""docs/lifecycle.md against the machine it documents: every status and every event kind
of ``tasktrail.lifecycle.TRANSITIONS`` is described there, and nothing more."""

from __future__ import annotations

import re
from pathlib import Path

from tasktrail.job import STATUSES
from tasktrail.lifecycle import TRANSITIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"


def test_every_event_kind_of_the_machine_has_a_row_and_no_other_does() -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    kinds = {kind for arrows in TRANSITIONS.values() for kind in arrows}
    kinds |= {"enqueued", "outcome_rejected"}  # the first event, and the one that changes nothing
    assert documented == kinds


def test_every_status_is_named() -> None:
    text = DOC.read_text(encoding="utf-8")
    for status in STATUSES:
        assert f"`{status}`" in text, status
