"""The mixed scenario's pure parts (issue 16): the job list, the ideal and FIFO makespans,
and what tasktrail's job histories say about a run. No database, no process: unit-tested
in tests/unit/test_bench_mixed.py.

A few long jobs among many short ones, enqueued together in one bulk call on workers
already idle: a queue that hands out jobs fairly keeps every process busy until the end;
one that lets a short job wait behind a long one in a busy process's hands, or lets a
worker hold a long job while another worker's process is free, ends late.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: The phrase of the ``interrupted`` event of a planned job that tasktrail gave back
#: because its process stayed busy (tasktrail.worker.flow.GIVEN_BACK).
GIVEN_BACK_PHRASE = "given back"


def long_positions(total: int, long_count: int) -> list[int]:
    """Where the long jobs go among ``total`` jobs: evenly spaced, long job ``k``
    (0-based) at index ``floor((k + 1/2) * total / long_count)``, the middle of its
    ``1/long_count`` of the list (8 among 408: 25, 76, 127, 178, 229, 280, 331, 382)."""
    if long_count < 0 or total < long_count:
        raise ValueError(f"cannot place {long_count} long jobs among {total}")
    return [(2 * k + 1) * total // (2 * long_count) for k in range(long_count)]


def mixed_durations(
    long_count: int, long_seconds: float, short_count: int, short_seconds: float
) -> list[float]:
    """The seconds of each job, in enqueue order: ``short_count`` short jobs with
    ``long_count`` long ones among them at :func:`long_positions`."""
    total = long_count + short_count
    longs = set(long_positions(total, long_count))
    return [long_seconds if index in longs else short_seconds for index in range(total)]


def ideal_makespan(durations: Sequence[float], slots: int) -> float:
    """Total work ÷ processes: the makespan with every process busy to the end."""
    if slots < 1:
        raise ValueError("slots must be at least 1")
    return sum(durations) / slots


def fifo_starts(durations: Sequence[float], slots: int) -> list[float]:
    """When each job starts if the jobs are begun strictly in their order, each on the
    first of ``slots`` free processes, with no cost between jobs (list scheduling). No
    schedule that begins them in this order ends sooner: delaying a job never frees a
    process sooner, and the processes are alike."""
    if slots < 1:
        raise ValueError("slots must be at least 1")
    free = [0.0] * slots
    starts: list[float] = []
    previous = 0.0
    for seconds in durations:
        start = max(heapq.heappop(free), previous)
        starts.append(start)
        heapq.heappush(free, start + seconds)
        previous = start
    return starts


def fifo_makespan(durations: Sequence[float], slots: int) -> float:
    """The best makespan of any schedule that begins the jobs in their order
    (:func:`fifo_starts`)."""
    starts = fifo_starts(durations, slots)
    return max((s + d for s, d in zip(starts, durations, strict=True)), default=0.0)


def makespan_ratio(makespan: float, ideal: float) -> float:
    """Makespan ÷ ideal (1.0: every process busy to the end)."""
    if ideal <= 0:
        raise ValueError("the ideal makespan must be positive")
    return makespan / ideal


# -- what tasktrail's histories say ------------------------------------------------------


@dataclass(frozen=True)
class HistoryEvent:
    """One event of a tasktrail job, as the analysis needs it."""

    kind: str
    at: datetime
    worker_id: int | None
    child_pid: int | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class JobHistory:
    """A job of the mixed scenario: its place in the enqueue order, its seconds, and its
    history (in order)."""

    position: int
    seconds: float
    events: tuple[HistoryEvent, ...]

    def ran(self) -> tuple[float, float, HistoryEvent] | None:
        """(begin, end) in epoch seconds of the attempt that succeeded, and its event.
        The begin is the ``succeeded`` event's time less the run time the child
        measured (the ``started`` event is the claim, before the child begins)."""
        for event in self.events:
            if event.kind == "succeeded":
                end = event.at.timestamp()
                runtime = float((event.detail or {}).get("runtime") or 0.0)
                return end - runtime, end, event
        return None


@dataclass
class LongJob:
    position: int
    claimed: float  # seconds after the end of the enqueue (its last ``started`` event)
    began: float
    ended: float
    fifo_began: float  # when the FIFO schedule begins it
    worker_id: int | None
    child_pid: int | None
    given_back: int  # times it was planned for a busy process and given back


@dataclass
class MixedDiagnosis:
    """What the histories of one tasktrail mixed run show (times in seconds after the
    end of the enqueue)."""

    longs: list[LongJob] = field(default_factory=list)
    given_back_short: int = 0
    given_back_long: int = 0
    #: For each short job planned for (started in the database for) a child that was
    #: running a long job at the time: seconds from that claim to its begin, anywhere.
    waits_behind_long: list[float] = field(default_factory=list)
    last_short_end: float = 0.0
    last_end: float = 0.0
    #: Processes' idle time (process-seconds) between the end of the enqueue and the last
    #: job's end: slots × last end − the jobs' run times.
    idle: float = 0.0
    #: The FIFO-order bound (:func:`fifo_makespan`) with each job's run time as its
    #: child measured it (a 10 ms sleep takes a little longer): what is left of the
    #: makespan above it is the queue's own cost between jobs.
    fifo_measured: float = 0.0
    by_worker: dict[int, int] = field(default_factory=dict)  # long jobs per worker id

    def summary(self) -> str:
        longs = ", ".join(
            f"#{j.position} {j.began:.2f}→{j.ended:.2f} (FIFO {j.fifo_began:.2f}; "
            f"w{j.worker_id}/{j.child_pid}"
            + (f", given back {j.given_back}×" if j.given_back else "")
            + ")"
            for j in self.longs
        )
        workers = ", ".join(f"w{w}: {n}" for w, n in sorted(self.by_worker.items()))
        waits = self.waits_behind_long
        over = sum(1 for wait in waits if wait > 0.1)
        return (
            f"long jobs began→ended [{longs}]; long jobs per worker {workers}; "
            f"'given back' interruptions: {self.given_back_short} short, "
            f"{self.given_back_long} long; short jobs planned behind a running long one: "
            f"{len(waits)} ({over} waited > 0.1 s, longest "
            f"{max(waits, default=0.0):.2f} s); last short job ended "
            f"{self.last_short_end:.2f} s, last job {self.last_end:.2f} s; idle "
            f"process-seconds {self.idle:.2f}; FIFO bound with the measured run times "
            f"{self.fifo_measured:.2f} s"
        )


def diagnose(
    jobs: Sequence[JobHistory], enqueued_at: float, slots: int, long_seconds: float
) -> MixedDiagnosis:
    """Read a run's histories: when and where each long job ran against the FIFO
    schedule, the ``interrupted`` events of jobs given back, and the short jobs that were
    planned for a process busy with a long one. ``enqueued_at`` is the epoch time the
    bulk enqueue returned; a job is long if it lasts ``long_seconds`` or more."""
    ordered = sorted(jobs, key=lambda job: job.position)
    fifo = fifo_starts([job.seconds for job in ordered], slots)
    found = MixedDiagnosis()
    # each long job's run: (child pid, begin, end)
    long_runs: list[tuple[int | None, float, float]] = []
    ran: dict[int, tuple[float, float, HistoryEvent]] = {}
    for job in ordered:
        got = job.ran()
        if got is not None:
            ran[job.position] = got
            if job.seconds >= long_seconds:
                long_runs.append((got[2].child_pid, got[0], got[1]))
    work = 0.0
    for index, job in enumerate(ordered):
        is_long = job.seconds >= long_seconds
        gave_back = sum(
            1
            for e in job.events
            if e.kind == "interrupted"
            and GIVEN_BACK_PHRASE in str((e.detail or {}).get("reason", ""))
        )
        if is_long:
            found.given_back_long += gave_back
        else:
            found.given_back_short += gave_back
        got = ran.get(job.position)
        if got is None:
            continue
        began, ended, final = got
        work += ended - began
        found.last_end = max(found.last_end, ended - enqueued_at)
        if is_long:
            claims = [e for e in job.events if e.kind == "started"]
            found.longs.append(
                LongJob(
                    position=job.position,
                    claimed=(claims[-1].at.timestamp() if claims else began) - enqueued_at,
                    began=began - enqueued_at,
                    ended=ended - enqueued_at,
                    fifo_began=fifo[index],
                    worker_id=final.worker_id,
                    child_pid=final.child_pid,
                    given_back=gave_back,
                )
            )
            if final.worker_id is not None:
                found.by_worker[final.worker_id] = found.by_worker.get(final.worker_id, 0) + 1
            continue
        found.last_short_end = max(found.last_short_end, ended - enqueued_at)
        behind = False
        for event in job.events:
            if event.kind != "started" or event.child_pid is None:
                continue
            claimed = event.at.timestamp()
            for pid, long_began, long_ended in long_runs:
                if pid == event.child_pid and long_began <= claimed < long_ended:
                    behind = True
                    break
        if behind:
            first_claim = min(e.at.timestamp() for e in job.events if e.kind == "started")
            found.waits_behind_long.append(began - first_claim)
    found.idle = max(0.0, slots * found.last_end - work)
    measured = [
        ran[job.position][1] - ran[job.position][0] if job.position in ran else job.seconds
        for job in ordered
    ]
    found.fifo_measured = fifo_makespan(measured, slots)
    return found
