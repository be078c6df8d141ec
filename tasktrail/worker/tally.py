"""What a worker has done since it started: :class:`Tally`, counted by its loop.

Plain numbers, kept whether or not anyone reads them (a few additions per round trip):
``tasktrail worker --metrics-port`` reads them at each scrape (:mod:`.metrics`).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["EXCHANGE_BUCKETS", "Tally"]

#: Upper bounds (seconds) of the buckets of the exchanges' durations: from a local
#: SQLite file (well under a millisecond) to a database across a slow network.
EXCHANGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(slots=True)
class Tally:
    """Counts since the worker started.

    Attributes:
        claimed: jobs taken from the database (each claimed for one child).
        started: jobs a child began.
        finished: outcomes recorded, by kind (``succeeded``, ``failed``, ``timeout``,
            ``cancelled``; ``interrupted`` and ``deferred`` give the job back).
        exchanges: round trips of the hot path (:meth:`.flow.JobFlow.exchange`) that
            the database answered.
        exchange_seconds: their total duration.
        exchange_buckets: how many took at most each of ``EXCHANGE_BUCKETS`` (and not
            the one before); the last one counts those longer than them all.
        database_errors: backend calls that failed for want of the database.
    """

    claimed: int = 0
    started: int = 0
    finished: Counter[str] = field(default_factory=Counter)
    exchanges: int = 0
    exchange_seconds: float = 0.0
    exchange_buckets: list[int] = field(default_factory=lambda: [0] * (len(EXCHANGE_BUCKETS) + 1))
    database_errors: int = 0

    def exchanged(self, seconds: float, claimed: int) -> None:
        """An exchange took ``seconds`` and brought ``claimed`` jobs."""
        self.exchanges += 1
        self.exchange_seconds += seconds
        self.exchange_buckets[bisect.bisect_left(EXCHANGE_BUCKETS, seconds)] += 1
        self.claimed += claimed
