"""The interface every system under benchmark implements.

A driver runs its system the way that system's own documentation says, in its best
configuration for 2 cores, and says what that configuration is (``configuration``). Every
measurement starts from empty queues; the driver cleans up in ``teardown``.

All jobs are no-ops unless a method says otherwise. "Drained" means the last job's final
state is visible in the system's own store (its database tables, or for Redis-based
peers a counter its jobs increment): the driver polls for it, it does not trust a
worker's exit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


class NotSupported(Exception):
    """This system cannot run this scenario (say why: it is printed in the table)."""


@dataclass(frozen=True)
class Latency:
    """Seconds from enqueue to the job starting, over the jobs of one run."""

    p50: float
    p95: float
    max: float


class Peer(ABC):
    """A system under benchmark."""

    #: Short name for the table, e.g. "tasktrail (PostgreSQL)", "PGQueuer".
    name: str
    #: "postgresql", "redis" or "sqlite".
    store: str

    def configuration(self) -> str:
        """One line: versions and the settings used (batch sizes, prefetch, pool, …)."""
        return ""

    def setup(self) -> None:
        """Create what the system needs (schema, queues); called once before its runs."""
        return None

    def teardown(self) -> None:
        """Drop/flush everything created; kill any process left."""
        return None

    @abstractmethod
    def enqueue_single(self, count: int) -> float:
        """Enqueue ``count`` jobs, one per transaction/call; return jobs per second."""

    @abstractmethod
    def enqueue_bulk(self, count: int) -> float:
        """Enqueue ``count`` jobs with the system's bulk API; return jobs per second."""

    @abstractmethod
    def drain(self, count: int, workers: int, processes: int) -> float:
        """Pre-enqueue ``count`` jobs (not timed), start ``workers`` worker processes with
        ``processes`` each, and return jobs per second from worker start until the last
        job is final in the store. Stop the workers afterwards."""

    @abstractmethod
    def latency(self, count: int, interval: float) -> Latency:
        """With one idle worker (1 process) already running, enqueue ``count`` jobs
        ``interval`` seconds apart; each job records when it started (e.g. the time in
        its result, or a row/Redis list). Return the enqueue→start latencies."""

    @abstractmethod
    def sleep_jobs(self, count: int, seconds: float, processes: int) -> float:
        """Wall time (seconds) to run ``count`` jobs that each sleep ``seconds``, with one
        worker of ``processes`` processes (or the system's nearest equivalent), from
        worker start to the last job final."""

    def mixed_jobs(self, durations: Sequence[float], workers: int, processes: int) -> float:
        """The mixed scenario: with ``workers`` workers of ``processes`` processes each
        (or the system's nearest equivalent: ``processes`` jobs at once per worker)
        started and idle, enqueue one job per item of ``durations``, in that order, in
        one bulk call; each job sleeps its item's seconds. Return the seconds from the
        end of the enqueue to the last job final in the store."""
        raise NotSupported("no driver for the mixed scenario yet")
