"""The lifecycle in the Backend contract: every path a backend can take a job along, driven
through its API, takes only arrows of ``lifecycle.TRANSITIONS``, and the paths together
take every one of them. On the two SQL backends, every named statement that changes a
job's status or writes its history is among those driven.

Why by driving the backend and not by parsing its SQL: most statuses the SQL writes are
not literals that a parser could read off an UPDATE. An outcome's status is a parameter
(``backends.common.transition`` computes it); the claim's is a CASE on the job's rank
(running or reserved), the lease recovery's a CASE on the attempts left (queued or
failed); fan-in's are written by triggers (``jobs_changed`` on PostgreSQL,
``jobs_release_dependents`` on SQLite) and PL/pgSQL functions (``take_back_jobs``,
``wait_for_jobs``); and on SQLite the events are written from Python beside the
statement that changes the status, so the kind and the status are in two files. A parser
would have to evaluate all of it to see a wrong status. Driven, each call's effect is read
back from the database: the status before, the events the call wrote, the status after.
A statement that writes the wrong status shows as an arrow the machine lacks (say
``('running', 'lost', 'queued')`` for a job with no attempts left), one that forgets its
event as a change of status without one, one that writes the wrong kind as an event
leading elsewhere. What driving alone could miss is a path never driven: so the named
statements each call ran are recorded, and every one of ``queries.sql`` that changes a
job (a regular expression over the file, so that a new one is included without a list
to keep) must have run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from tasktrail.backends import Backend, JobFilter
from tasktrail.backends._sql import queries, read_sql
from tasktrail.backends.postgres.backend import COPY_FROM
from tasktrail.job import Job, NewJob, Outcome
from tasktrail.lifecycle import (
    ATTEMPT_STARTED,
    ENQUEUED,
    INITIAL,
    TRANSITIONS,
    UNCHANGED,
    arrows,
)
from tasktrail.schedule import Every, ScheduleDef

from .helpers import T0, at, enqueue, failed, must_get, new_job, succeeded, worker_info
from .test_flow_contract import make_job

T = TypeVar("T")
Arrow = tuple[str | None, str | None, str | None]


@dataclass
class Trail:
    """The arrows the calls made on a backend took: per job, the status before a call,
    each event the call wrote, the status after. The status between two events of one
    call (``failed`` then ``retry_scheduled``) is never seen by anyone, so it is where the
    machine says; the status after the last is read back."""

    backend: Backend
    taken: dict[Arrow, list[str]] = field(default_factory=dict)  # arrow -> the calls
    statements: list[str] = field(default_factory=list)  # named statements run, in order

    def step(self, label: str, call: Callable[[], T]) -> T:
        before = self._snapshot()
        ran = len(self.statements)
        result = call()
        after = self._snapshot()
        if len(self.statements) > ran:
            label = f"{label} [{', '.join(sorted(set(self.statements[ran:])))}]"
        for job_id, (status, events, attempts) in after.items():
            old_status, old_events, _ = before.get(job_id, (None, [], 0))
            new = [event.kind for event in events[len(old_events) :]]
            for arrow in _arrows(old_status, new, status):
                self.taken.setdefault(arrow, []).append(f"job {job_id}: {label}")
                # at once: the calls after this one may not make sense any more
                assert _allowed(arrow), (
                    f"{label}: job {job_id} took {arrow}, which lifecycle.TRANSITIONS lacks"
                )
            started = sum(event.kind == ATTEMPT_STARTED for event in events)
            assert attempts == started, (
                f"{label}: job {job_id} has attempts {attempts} after {started} starts"
            )
        return result

    def _snapshot(self) -> dict[int, tuple[str, list[Any], int]]:
        jobs = self.backend.list_jobs(JobFilter(limit=None))
        return {
            job.id: (job.status, self.backend.list_events(job.id), job.attempts) for job in jobs
        }


def _allowed(arrow: Arrow) -> bool:
    """Whether ``arrow`` is one of the machine, or an event that changes nothing."""
    source, kind, target = arrow
    return arrow in arrows() or (kind in UNCHANGED and source is not None and source == target)


def _arrows(before: str | None, kinds: list[str], after: str) -> list[Arrow]:
    """The arrows a job took from ``before`` (None: it did not exist) to ``after`` by events
    of ``kinds``: the last one ends where the job is; those before it where the machine
    says (an arrow it lacks ends in None, and the walk stops)."""
    if not kinds:
        return [] if before == after else [(before, None, after)]
    found: list[Arrow] = []
    state = before
    for index, kind in enumerate(kinds):
        if index == len(kinds) - 1:
            target: str | None = after
        elif kind in UNCHANGED:
            target = state
        elif state is None:
            target = INITIAL if kind == ENQUEUED else None
        else:
            target = TRANSITIONS.get(state, {}).get(kind)
        found.append((state, kind, target))
        if target is None:
            break
        state = target
    return found


def drive(trail: Trail) -> None:
    """Every path of the lifecycle, each through each way the API offers to take it."""
    backend = trail.backend
    worker = backend.register_worker(worker_info("drive", lease_seconds=3600), now=T0)

    def one(queue: str, **options: Any) -> NewJob:
        return new_job(queue=queue, **options)

    def claim(queue: str, when: float, start: bool = True) -> Job:
        """Claim the one job of ``queue``: started at once, or reserved."""
        exchanged = backend.exchange(
            worker, outcomes=(), start_ids=(), claim=1, start_claimed=1 if start else 0,
            queues=[queue], now=at(when), child_pids=[100],
        )  # fmt: skip
        [held] = exchanged.started + exchanged.reserved
        return must_get(backend, held.id)

    def finish(outcome: Outcome, when: float) -> list[int]:
        return trail.step(
            f"finish {outcome.kind}", lambda: backend.finish(worker, [outcome], now=at(when))
        )

    def ended(job: Job, kind: str, when: float, **changes: Any) -> Outcome:
        return Outcome(job.id, job.attempts, kind, at(when), **changes)  # type: ignore[arg-type]

    # Enqueue: one job, a few at once, a unique one, one waiting for another.
    trail.step("enqueue one", lambda: enqueue(backend, [one("plain")], now=T0))
    queues = ("retrying", "timing", "interrupted", "deferred", "cancelled")
    *_, queued = trail.step(
        "enqueue several",
        lambda: enqueue(backend, [one(q, max_attempts=2) for q in queues], now=T0),
    )
    [unique] = trail.step(
        "enqueue unique",
        lambda: enqueue(backend, [one("unique")._replace(unique_key="u")], now=T0),
    )
    parents = trail.step(
        "enqueue parents",
        lambda: enqueue(backend, [one(f"parent{i}") for i in range(4)], now=T0),
    )
    waiters = trail.step(
        "enqueue waiting",
        lambda: enqueue(
            backend,
            [
                one("waiter")._replace(after=(parents[0],)),  # it succeeds: ready
                one("waiter")._replace(after=(parents[1],)),  # it fails: cancelled
                one("waiter")._replace(after=(parents[2],)),  # cancelled by a person
                one("waiter")._replace(after=(parents[3],), after_policy="finished"),
            ],
            now=T0,
        ),
    )

    # Claimed straight into a process, then each way an attempt ends.
    job = trail.step("claim and start", lambda: claim("plain", 1))
    finish(succeeded(job, at(2)), 2)
    finish(ended(job, "succeeded", 2.5), 2.5)  # again: the fence refuses it
    job = trail.step("claim and start", lambda: claim("retrying", 1))
    finish(failed(job, at(2), retry_at=at(3)), 2)
    job = trail.step("claim and start", lambda: claim("retrying", 3))
    finish(failed(job, at(4)), 4)  # no attempt left: final
    trail.step("retry failed", lambda: backend.retry(job.id, now=at(5), by="person"))
    job = trail.step("claim and start", lambda: claim("timing", 1))
    finish(failed(job, at(2), retry_at=at(3), kind="timeout"), 2)
    job = trail.step("claim and start", lambda: claim("timing", 3))
    finish(failed(job, at(4), kind="timeout"), 4)
    job = trail.step("claim and start", lambda: claim("interrupted", 1))
    finish(ended(job, "interrupted", 2, detail={"reason": "shutdown"}), 2)
    job = trail.step("claim and start", lambda: claim("deferred", 1))
    finish(ended(job, "deferred", 2, retry_at=at(7), detail={"reason": "unknown_task"}), 2)

    # Reserved, then released, started by id, or cancelled.
    job = trail.step("reserve", lambda: claim("unique", 5, start=False))
    trail.step("release", lambda: backend.release(worker, [job.id], now=at(6), reason="shutdown"))
    job = trail.step("reserve", lambda: claim("unique", 7, start=False))
    trail.step("start reserved", lambda: backend.mark_started(worker, [job.id], now=at(8)))
    job = must_get(backend, job.id)
    trail.step("request cancel", lambda: backend.cancel(unique, now=at(9), by="person"))
    finish(ended(job, "cancelled", 10, error="cancelled while running"), 10)
    trail.step("retry cancelled", lambda: backend.retry(unique, now=at(11), by="person"))
    job = trail.step("reserve", lambda: claim("unique", 12, start=False))
    trail.step("cancel reserved", lambda: backend.cancel(job.id, now=at(13), by="person"))
    # A cancel asked while it ran overrules the outcome: interrupted becomes cancelled.
    job = trail.step("claim and start", lambda: claim("interrupted", 14))
    trail.step("request cancel", lambda: backend.cancel(job.id, now=at(15), by="person"))
    finish(ended(job, "interrupted", 16, detail={"reason": "shutdown"}), 16)
    trail.step("cancel queued", lambda: backend.cancel(queued, now=at(17), by="person"))

    # Fan-in: released by the database when what they wait for ends, or cancelled.
    job = trail.step("claim and start", lambda: claim("parent0", 20))
    finish(succeeded(job, at(21)), 21)
    job = trail.step("claim and start", lambda: claim("parent1", 20))
    finish(failed(job, at(21)), 21)
    trail.step("cancel waiting", lambda: backend.cancel(waiters[2], now=at(22), by="person"))
    trail.step("cancel a parent", lambda: backend.cancel(parents[3], now=at(22), by="person"))
    trail.step(
        "enqueue waiting for an ended job",
        lambda: enqueue(backend, [one("late")._replace(after=(parents[0],))], now=at(23)),
    )

    # Lost: a worker's lease expires holding a reserved and two running jobs; another
    # stops holding one it reserved.
    doomed = backend.register_worker(worker_info("doomed", lease_seconds=5), now=at(30))
    held = enqueue(backend, [one("lost0"), one("lost1", max_attempts=2), one("lost2")], now=at(30))
    for index, start in enumerate((False, True, True)):
        trail.step(
            "claim for the doomed worker",
            lambda index=index, start=start: backend.exchange(
                doomed, outcomes=(), start_ids=(), claim=1, start_claimed=int(start),
                queues=[f"lost{index}"], now=at(31),
            ),
        )  # fmt: skip
    recovered = trail.step("recover lost", lambda: backend.recover_lost(now=at(40)))
    assert sorted(item.job_id for item in recovered) == held
    leaving = backend.register_worker(worker_info("leaving"), now=at(41))
    [kept] = enqueue(backend, [one("leaving")], now=at(41))
    trail.step(
        "claim for the leaving worker",
        lambda: backend.exchange(
            leaving, outcomes=(), start_ids=(), claim=1, start_claimed=0, queues=["leaving"],
            now=at(42),
        ),
    )  # fmt: skip
    trail.step("unregister", lambda: backend.unregister_worker(leaving, now=at(43)))
    assert must_get(backend, kept).status == "queued"

    # An outcome, a start and a claim in one exchange, as the worker's hot path does.
    first, second = enqueue(backend, [one("hot"), one("hot")], now=at(50))
    job = trail.step("reserve", lambda: claim("hot", 51, start=False))
    trail.step(
        "exchange",
        lambda: backend.exchange(
            worker, outcomes=(), start_ids=[job.id], claim=1, start_claimed=1,
            queues=["hot"], now=at(52), child_pids=[101],
        ),
    )  # fmt: skip
    other = must_get(backend, second if job.id == first else first)
    trail.step(
        "exchange",
        lambda: backend.exchange(
            worker, outcomes=[succeeded(must_get(backend, job.id), at(53)),
                              succeeded(other, at(53))],
            start_ids=(), claim=1, start_claimed=1, queues=["hot"], now=at(53),
        ),
    )  # fmt: skip

    # A schedule's due time, fired by a worker; and a batch big enough for PostgreSQL's
    # COPY (last: every job is read back after each call).
    backend.save_schedule(ScheduleDef("drive", "tests.task", Every(60.0)), now=at(60))
    trail.step(
        "fire schedules",
        lambda: backend.fire_due_schedules(now=at(130), worker_id=worker, make_job=make_job),
    )
    trail.step(
        "enqueue many",
        lambda: enqueue(backend, [one("many") for _ in range(COPY_FROM)], now=at(140)),
    )


def test_every_arrow_taken_is_one_of_the_lifecycle_and_each_of_its_arrows_is_taken(
    backend: Backend,
) -> None:
    trail = Trail(backend)
    drive(trail)  # (each call's arrows are checked as it returns)
    strange = {arrow: calls[:3] for arrow, calls in trail.taken.items() if not _allowed(arrow)}
    assert strange == {}, "arrows the backend took that lifecycle.TRANSITIONS does not have"
    assert arrows() - set(trail.taken) == set(), "arrows of lifecycle.TRANSITIONS no path took"
    assert any(kind in UNCHANGED for _, kind, _ in trail.taken), "no late outcome was refused"


# -- the statements driven (the SQL backends) --------------------------------------------

#: A statement changes a job if it inserts jobs or events, copies jobs in, or updates a
#: job's status, the dependents count whose update fires the fan-in trigger (SQLite), or
#: its cancel request; or calls a function that does (PostgreSQL).
_INSERTS = re.compile(
    r"\bINSERT\s+INTO\s+(?:tasktrail\.)?(?:jobs|events)\b|\bCOPY\s+(?:tasktrail\.)?jobs\b"
)
_UPDATE_SET = re.compile(
    r"\bUPDATE\s+(?:tasktrail\.)?jobs\b(?:\s+\w+)?\s+SET\b(.*?)(?:\bFROM\b|\bWHERE\b|$)", re.S
)
_COLUMNS = re.compile(r"\b(?:status|dependents|cancel_requested_at)\s*=")
_FUNCTION = re.compile(r"CREATE OR REPLACE FUNCTION tasktrail\.(\w+)\(.*?\$\$(.*?)\$\$", re.S)


def _changes_jobs(statement: str, functions: frozenset[str] = frozenset()) -> bool:
    if _INSERTS.search(statement):
        return True
    if any(_COLUMNS.search(found.group(1)) for found in _UPDATE_SET.finditer(statement)):
        return True
    return any(re.search(rf"\btasktrail\.{name}\s*\(", statement) for name in functions)


def job_changing_statements(dialect: str) -> set[str]:
    """The named statements of ``sql/<dialect>/queries.sql`` that change a job."""
    functions = frozenset(
        found.group(1)
        for found in _FUNCTION.finditer(read_sql(dialect, "schema.sql"))
        if _changes_jobs(found.group(2))
    )
    return {name for name, text in queries(dialect).items() if _changes_jobs(text, functions)}


class _Recording(dict[str, Any]):
    """A backend's named statements that note each name looked up."""

    def __init__(self, statements: dict[str, Any], seen: list[str]) -> None:
        super().__init__(statements)
        self.seen = seen

    def __getitem__(self, name: str) -> Any:
        self.seen.append(name)
        return super().__getitem__(name)


@contextmanager
def recorded_statements(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, seen: list[str]
) -> Iterator[str]:
    """Note in ``seen`` the name of each statement ``backend`` runs; yield its dialect."""
    if backend.kind == "postgresql":
        monkeypatch.setattr(backend, "_q", _Recording(backend._q, seen))  # type: ignore[attr-defined]
        monkeypatch.setattr(backend, "_native", _Recording(backend._native, seen))  # type: ignore[attr-defined]
        yield "postgres"
    elif backend.kind == "sqlite":
        import tasktrail.backends.sqlite.backend
        import tasktrail.backends.sqlite.jobs
        import tasktrail.backends.sqlite.schedules

        for module in (
            tasktrail.backends.sqlite.backend,
            tasktrail.backends.sqlite.jobs,
            tasktrail.backends.sqlite.schedules,
        ):
            monkeypatch.setattr(module, "_Q", _Recording(module._Q, seen))
        yield "sqlite"
    else:
        pytest.skip(f"no named SQL statements known for a {backend.kind} backend")


def test_every_statement_that_changes_a_job_is_driven(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = Trail(backend)
    with recorded_statements(backend, monkeypatch, trail.statements) as dialect:
        drive(trail)
    expected = job_changing_statements(dialect)
    assert expected, f"no statement of {dialect}/queries.sql seems to change a job"
    assert expected - set(trail.statements) == set(), "statements that change jobs, not driven"


def test_the_statements_that_change_jobs_are_found() -> None:
    """The regular expressions find what they must (checked on statements of each kind)."""
    assert {"exchange", "release", "take_back", "wait_for_jobs", "copy_jobs"} <= (
        job_changing_statements("postgres")
    )
    assert {"finish", "claim_start", "touch_dependents", "request_cancel", "insert_event"} <= (
        job_changing_statements("sqlite")
    )
    assert not {"list_events", "job_status", "claim_candidates"} & (
        job_changing_statements("postgres") | job_changing_statements("sqlite")
    )
