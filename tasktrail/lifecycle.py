"""The job lifecycle: the one source of which event moves a job from which status to which.

:data:`TRANSITIONS` is the machine. The backends take the status an outcome leads to from
it (``backends.common.transition``, through :func:`follow`); their SQL, which cannot
import it, is checked against it by ``tests/backends/test_lifecycle_contract.py``, which
drives every path through each backend and compares the arrows taken with these, both
ways. :func:`check_history` checks that a job's history is a path of it (the contract,
integration and chaos tests run it on every job), and :func:`mermaid` draws it for
``docs/lifecycle.md``, which says what each event kind means and who writes it
(``python -m tasktrail.lifecycle docs/lifecycle.md`` regenerates the diagram there).
Pure; no I/O.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from .job import FINAL_STATUSES

__all__ = [
    "ATTEMPT_STARTED",
    "DIAGRAM_BEGIN",
    "DIAGRAM_END",
    "ENQUEUED",
    "INITIAL",
    "TRANSITIONS",
    "UNCHANGED",
    "arrows",
    "check_history",
    "follow",
    "mermaid",
    "sources",
    "with_diagram",
]

#: ``{status: {event kind: the status it leads to}}``: every arrow of the lifecycle.
TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "waiting": {"ready": "queued", "cancelled": "cancelled"},
    "queued": {
        "waiting": "waiting",
        "reserved": "reserved",
        "started": "running",
        "cancelled": "cancelled",
    },
    "reserved": {
        "released": "queued",
        "started": "running",
        "lost": "queued",
        "cancelled": "cancelled",
    },
    "running": {
        "succeeded": "succeeded",
        "failed": "failed",
        "timeout": "failed",
        "lost": "failed",
        "interrupted": "queued",
        "deferred": "queued",
        "cancel_requested": "running",
        "cancelled": "cancelled",
    },
    "failed": {"retry_scheduled": "queued", "retried": "queued"},
    "cancelled": {"retried": "queued"},
    "succeeded": {},
}

#: The first event of every job, and the status it creates the job in.
ENQUEUED: Final = "enqueued"
INITIAL: Final = "queued"
#: The event that begins an attempt: a job's ``attempts`` counts these, and every event
#: carries the count as it was when it happened.
ATTEMPT_STARTED: Final = "started"
#: Events recorded in any status that change nothing: a late outcome the fence refused.
UNCHANGED: Final = frozenset({"outcome_rejected"})


def follow(status: str, *kinds: str) -> str:
    """The status a job in ``status`` is in after events of ``kinds``, in order.

    Raises:
        ValueError: one of them is not an arrow out of the status the job has then.
    """
    for kind in kinds:
        if kind in UNCHANGED:
            continue
        following = TRANSITIONS.get(status, {}).get(kind)
        if following is None:
            raise ValueError(f"no {kind!r} arrow out of {status!r} in the lifecycle")
        status = following
    return status


def sources(kind: str) -> tuple[str, ...]:
    """The statuses an event of ``kind`` may leave, in the order of :data:`TRANSITIONS`."""
    return tuple(status for status, moves in TRANSITIONS.items() if kind in moves)


def arrows() -> set[tuple[str | None, str, str]]:
    """Every arrow ``(from, kind, to)`` of the machine, the first event's included (from
    ``None``, no job yet); :data:`UNCHANGED` events are loops on every status, not arrows."""
    found: set[tuple[str | None, str, str]] = {(None, ENQUEUED, INITIAL)}
    found.update(
        (status, kind, following)
        for status, moves in TRANSITIONS.items()
        for kind, following in moves.items()
    )
    return found


#: The comment lines a generated diagram sits between in a Markdown file.
DIAGRAM_BEGIN: Final = (
    "<!-- lifecycle diagram: generated from tasktrail.lifecycle.TRANSITIONS by "
    "`python -m tasktrail.lifecycle docs/lifecycle.md`; do not edit by hand -->"
)
DIAGRAM_END: Final = "<!-- end of the lifecycle diagram -->"


def mermaid() -> str:
    """The machine as a Mermaid ``stateDiagram-v2`` block (a fenced code block, as
    Markdown renderers with Mermaid support draw it): one arrow per pair of statuses,
    labelled with the event kinds that take it, in the order of :data:`TRANSITIONS`."""
    lines = ["```mermaid", "stateDiagram-v2", f"    [*] --> {INITIAL}: {ENQUEUED}"]
    for status, moves in TRANSITIONS.items():
        by_target: dict[str, list[str]] = {}
        for kind, following in moves.items():
            by_target.setdefault(following, []).append(kind)
        lines.extend(
            f"    {status} --> {following}: {' / '.join(kinds)}"
            for following, kinds in by_target.items()
        )
    lines.extend(f"    {status} --> [*]" for status in TRANSITIONS if status in FINAL_STATUSES)
    lines.append("```")
    return "\n".join(lines)


def with_diagram(text: str) -> str:
    """``text`` (a Markdown page) with the diagram between its marker lines rendered anew.

    Raises:
        ValueError: the page lacks the marker lines.
    """
    begin, end = text.find(DIAGRAM_BEGIN), text.find(DIAGRAM_END)
    if begin < 0 or end < begin:
        raise ValueError(f"no lines {DIAGRAM_BEGIN!r} ... {DIAGRAM_END!r} to put the diagram in")
    head = text[: begin + len(DIAGRAM_BEGIN)]
    return f"{head}\n{mermaid()}\n{text[end:]}"


def check_history(events: Sequence[Any], final_status: str | None = None) -> list[str]:
    """Problems with a job's history; an empty list means it is a valid path.

    Args:
        events: the job's events in order, as :class:`~tasktrail.job.Event` or any
            object with ``kind`` and ``attempt`` attributes.
        final_status: the job's current status, checked against where the path ends.
    """
    problems: list[str] = []
    if not events:
        return ["no events"]
    if events[0].kind != ENQUEUED:
        problems.append(f"first event is {events[0].kind!r}, not {ENQUEUED!r}")
    state = INITIAL
    attempts = 0
    for index, event in enumerate(events[1:], start=1):
        if event.kind in UNCHANGED:
            continue
        if event.kind == ATTEMPT_STARTED:
            attempts += 1
        following = TRANSITIONS.get(state, {}).get(event.kind)
        if following is None:
            problems.append(f"event {index} {event.kind!r} is not allowed when {state}")
            continue
        if event.attempt != attempts:
            problems.append(
                f"event {index} {event.kind!r} says attempt {event.attempt}, expected {attempts}"
            )
        state = following
    if final_status is not None and state != final_status:
        problems.append(f"history ends {state!r} but the job is {final_status!r}")
    return problems


def main(argv: Sequence[str]) -> int:
    """``python -m tasktrail.lifecycle``: print the diagram; with a Markdown file's path,
    rewrite the diagram between its marker lines instead."""
    if not argv:
        print(mermaid())
        return 0
    for name in argv:
        path = Path(name)
        path.write_text(with_diagram(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
