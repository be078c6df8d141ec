"""What must hold after a chaos run, checked from the database and the side log.

Pure: :func:`check` takes the jobs, their histories, the worker registry and the
executions the task bodies recorded, and returns the figures and every violation.

The rules:

* every job is in a final state, and every job the harness enqueued exists (none lost);
* no job succeeded twice (at most one ``succeeded`` event) and no attempt ran in two
  processes;
* no two executions of one job overlapped while the worker holding the earlier one had
  a current lease. An execution may overlap a later attempt only if the earlier
  attempt ended with ``lost`` (its worker's lease expired: crashed, stalled or cut off)
  and the later one began after that ``lost`` was written. A stalled or partitioned
  worker believes itself alive; what counts is what the database decided;
* attempts are counted right: ``jobs.attempts`` equals the number of ``started``
  events, every execution belongs to an attempt the database started, in a child of
  the worker that started it, and a succeeded attempt really ran to its end;
* every job's history is a valid path of the lifecycle (``check_history``);
* a job that waited for others (``after=``) was released once (one ``ready`` event), not
  before the last of them ended (its ``finished_at``), and ran only after that;
* no worker is left registered as running.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasktrail.lifecycle import check_history

__all__ = ["Execution", "Figures", "attempt_endings", "check", "executions_from_rows"]

#: Events that end a running attempt (``lost`` only when the job was running).
ATTEMPT_END_KINDS = frozenset(
    {"succeeded", "failed", "timeout", "lost", "interrupted", "cancelled"}
)
#: Endings the supervisor records after it saw the child die or answer: the process
#: running the attempt was gone (or done) when the event was written.
SEEN_ENDINGS = frozenset({"succeeded", "failed", "timeout", "interrupted", "cancelled"})


@dataclass(frozen=True, slots=True)
class Execution:
    """One run of a task body, from the side log."""

    job_id: int
    attempt: int
    pid: int
    ppid: int
    start: float | None  # wall-clock seconds
    end: float | None  # None: it never reached its end (killed, or still running)


def executions_from_rows(rows: Iterable[dict[str, Any]]) -> list[Execution]:
    """Side-log rows (``job, attempt, pid, ppid, phase, at``) merged per execution.

    A row may be there twice (written to the table, then spooled after an ambiguous
    error): the earliest start and latest end count.
    """
    starts: dict[tuple[int, int, int], float] = {}
    ends: dict[tuple[int, int, int], float] = {}
    parents: dict[tuple[int, int, int], int] = {}
    for row in rows:
        key = (int(row["job"]), int(row["attempt"]), int(row["pid"]))
        parents[key] = int(row["ppid"])
        at = float(row["at"])
        if row["phase"] == "start":
            starts[key] = min(at, starts.get(key, at))
        else:
            ends[key] = max(at, ends.get(key, at))
    return [
        Execution(key[0], key[1], key[2], parents[key], starts.get(key), ends.get(key))
        for key in sorted(parents)
    ]


def attempt_endings(events: Sequence[Any]) -> dict[int, Any]:
    """For each attempt number, the event that ended it (if any did)."""
    endings: dict[int, Any] = {}
    running: set[int] = set()
    for event in events:
        if event.kind == "started":
            running.add(event.attempt)
        elif event.kind in ATTEMPT_END_KINDS and event.attempt in running:
            if event.kind == "lost" and (event.detail or {}).get("was") == "reserved":
                continue
            running.discard(event.attempt)
            endings[event.attempt] = event
    return endings


@dataclass
class Figures:
    """What a run did, and what went wrong."""

    jobs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    executions: int = 0
    recovered: int = 0  # lost events: jobs taken back from workers whose lease expired
    rejected: int = 0  # outcome_rejected events: late outcomes refused by the fence
    overlaps_after_loss: int = 0  # allowed overlaps (the earlier worker was declared lost)
    lost: int = 0  # jobs enqueued and missing, or not final
    duplicates: int = 0  # second successes, attempts run twice, overlaps while alive
    waited: int = 0  # jobs enqueued to wait for others (fan-in)
    violations: list[str] = field(default_factory=list)

    def violate(self, message: str) -> None:
        self.violations.append(message)


def _overlap(first: Execution, second: Execution, end_of: dict[Execution, float]) -> bool:
    if first.start is None or second.start is None:
        return False
    return first.start < end_of[second] and second.start < end_of[first]


def _check_job(
    job: Any,
    events: Sequence[Any],
    runs: list[Execution],
    worker_pids: dict[int, int],
    figures: Figures,
) -> None:
    problems = check_history(events, job.status)
    if problems:
        figures.violate(f"job {job.id}: invalid history {problems}: {[e.kind for e in events]}")
    started = [e for e in events if e.kind == "started"]
    if job.attempts != len(started):
        figures.violate(
            f"job {job.id}: attempts is {job.attempts} but {len(started)} started events"
        )
    successes = [e for e in events if e.kind == "succeeded"]
    if len(successes) > 1:
        figures.duplicates += 1
        figures.violate(f"job {job.id}: succeeded {len(successes)} times")
    if job.status == "succeeded" and len(successes) != 1:
        figures.violate(f"job {job.id}: succeeded without one succeeded event")
    starters = {e.attempt: e.worker_id for e in started}
    endings = attempt_endings(events)
    figures.recovered += sum(1 for e in events if e.kind == "lost")

    by_attempt: dict[int, list[Execution]] = defaultdict(list)
    for run in runs:
        by_attempt[run.attempt].append(run)
        if run.attempt not in starters:
            figures.violate(
                f"job {job.id}: attempt {run.attempt} ran (pid {run.pid}) but was never "
                "started in the database"
            )
        elif worker_pids.get(starters[run.attempt]) not in (None, run.ppid):
            figures.violate(
                f"job {job.id}: attempt {run.attempt} ran under pid {run.ppid}, not under "
                f"worker {starters[run.attempt]} (pid {worker_pids[starters[run.attempt]]}) "
                "that started it"
            )
    for attempt, same in by_attempt.items():
        if len(same) > 1:
            figures.duplicates += 1
            figures.violate(
                f"job {job.id}: attempt {attempt} ran in {len(same)} processes "
                f"{[run.pid for run in same]}"
            )
    for success in successes:
        if not any(run.end is not None for run in by_attempt.get(success.attempt, [])):
            figures.violate(
                f"job {job.id}: attempt {success.attempt} succeeded but no execution of it "
                "reached its end"
            )

    # When each execution was over, at the latest: its own end; else the moment the
    # supervisor recorded the death of its process; else (its worker was lost, the
    # process may have run on) never, as far as we know.
    end_of: dict[Execution, float] = {}
    for run in runs:
        ending = endings.get(run.attempt)
        if run.end is not None:
            end_of[run] = run.end
        elif ending is not None and ending.kind in SEEN_ENDINGS:
            end_of[run] = ending.at.timestamp()
        else:
            end_of[run] = math.inf
    ordered = sorted(runs, key=lambda run: (run.attempt, run.start or 0.0))
    for index, first in enumerate(ordered):
        for second in ordered[index + 1 :]:
            if second.attempt == first.attempt or not _overlap(first, second, end_of):
                continue
            ending = endings.get(first.attempt)
            if (
                ending is not None
                and ending.kind == "lost"
                and second.start is not None
                and second.start >= ending.at.timestamp()
            ):
                figures.overlaps_after_loss += 1
                continue
            figures.duplicates += 1
            figures.violate(
                f"job {job.id}: attempt {first.attempt} (pid {first.pid}) and attempt "
                f"{second.attempt} (pid {second.pid}) ran at the same time, and attempt "
                f"{first.attempt} ended {ending.kind if ending else 'never'}, not lost "
                "before the other began"
            )


def _check_fan_in(
    job: Any, events: Sequence[Any], by_id: Mapping[int, Any], figures: Figures
) -> None:
    waits = [e for e in events if e.kind == "waiting"]
    if not waits:
        return
    figures.waited += 1
    after = waits[0].detail.get("after", [])
    readies = [e for e in events if e.kind == "ready"]
    if len(readies) != 1:
        figures.violate(f"job {job.id}: released {len(readies)} times (waited for {after})")
        return
    ends = [by_id[a].finished_at for a in after if a in by_id and by_id[a].finished_at]
    if len(ends) != len(after):
        figures.violate(f"job {job.id}: released, but not all of {after} have ended")
    elif readies[0].at < max(ends):
        figures.violate(
            f"job {job.id}: released at {readies[0].at}, before the last of {after} ended "
            f"({max(ends)})"
        )


def check(
    jobs: Sequence[Any],
    events_of: Mapping[int, Sequence[Any]],
    workers: Sequence[Any],
    executions: Sequence[Execution],
    enqueued: dict[str, int],
) -> Figures:
    """Check every rule of the module docstring.

    Args:
        jobs: every job in the database.
        events_of: each job's history, oldest first.
        workers: the whole worker registry (stopped and lost included).
        executions: what the bodies recorded.
        enqueued: how many jobs the harness enqueued, by task name.
    """
    figures = Figures(jobs=len(jobs), executions=len(executions))
    figures.statuses = Counter(job.status for job in jobs)
    by_task = Counter(job.task for job in jobs)
    for task, count in sorted(enqueued.items()):
        if by_task[task] < count:
            figures.lost += count - by_task[task]
            figures.violate(f"{count - by_task[task]} {task} jobs enqueued are missing")
    worker_pids = {worker.id: worker.pid for worker in workers}
    runs_of: dict[int, list[Execution]] = defaultdict(list)
    for run in executions:
        runs_of[run.job_id].append(run)
    known = {job.id for job in jobs}
    for job_id in sorted(set(runs_of) - known):
        figures.violate(f"job {job_id} ran but is not in the database")
    for job in jobs:
        if job.status not in ("succeeded", "failed", "cancelled"):
            figures.lost += 1
            figures.violate(f"job {job.id} ({job.task}) is still {job.status}")
        events = events_of.get(job.id, [])
        figures.rejected += sum(1 for e in events if e.kind == "outcome_rejected")
        _check_job(job, events, runs_of.get(job.id, []), worker_pids, figures)
    by_id = {job.id: job for job in jobs}
    for job in jobs:
        _check_fan_in(job, events_of.get(job.id, []), by_id, figures)
    for worker in workers:
        if worker.status == "running":
            figures.violate(f"worker {worker.id} ({worker.name}) is still registered as running")
    return figures
