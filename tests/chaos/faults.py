"""The fault schedule: which fault, when, drawn from a seed. Pure; no I/O.

The same seed gives the same schedule: the same kinds at the same offsets with the same
choices (``pick`` chooses a target among those eligible when the fault fires, ``extra``
a kind-specific variant such as a stop mode or a duration). What the faults then hit
depends on timing, as it would in production.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "ALL_KINDS",
    "DESCRIPTIONS",
    "POSTGRES_ONLY",
    "Fault",
    "kinds_for",
    "make_schedule",
]

DESCRIPTIONS: dict[str, str] = {
    "kill_child": "SIGKILL of a random child process",
    "kill_supervisor": "SIGKILL of a whole supervisor (its children die by PDEATHSIG), "
    "then a new worker",
    "stall": "SIGSTOP of a supervisor past its lease (its children keep running, "
    "orphaned), then SIGCONT or SIGKILL",
    "sigterm": "SIGTERM of every worker under full load, then new workers",
    "hang": "a job that never returns (its task timeout kills it)",
    "hog": "a job that allocates memory until the harness, as OOM killer, kills it",
    "pg_restart": "PostgreSQL restarted (pg_ctlcluster restart, fast or immediate)",
    "pg_stop": "PostgreSQL stopped for about 10 s",
    "pg_terminate": "workers' connections killed server-side (pg_terminate_backend)",
    "partition": "a worker host cut off from the network (veth link down) past its "
    "lease, then back",
}
ALL_KINDS = tuple(DESCRIPTIONS)
POSTGRES_ONLY = frozenset({"pg_restart", "pg_stop", "pg_terminate", "partition"})

#: How often each kind comes up among the faults beyond the first of each kind: the
#: cheap, frequent ones often, the long ones rarely.
_WEIGHTS = {
    "kill_child": 10,
    "kill_supervisor": 2,
    "stall": 1,
    "sigterm": 1,
    "hang": 2,
    "hog": 1,
    "pg_restart": 1,
    "pg_stop": 0.5,
    "pg_terminate": 3,
    "partition": 0.5,
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault of the schedule."""

    at: float  # seconds after the run started
    kind: str
    pick: float  # in [0, 1): which target, among those eligible when it fires
    extra: float  # in [0, 1): a variant of the kind (mode, duration)

    def describe(self) -> str:
        return f"{self.at:7.2f}s {self.kind} (pick {self.pick:.2f}, extra {self.extra:.2f})"


def kinds_for(backend: str, *, netns: bool = True) -> tuple[str, ...]:
    """The fault kinds that apply to ``backend`` (``partition`` needs ``ip netns``)."""
    kinds = [k for k in ALL_KINDS if backend == "postgres" or k not in POSTGRES_ONLY]
    if not netns and "partition" in kinds:
        kinds.remove("partition")
    return tuple(kinds)


def make_schedule(
    seed: int, kinds: tuple[str, ...], window: float, per_minute: float
) -> list[Fault]:
    """Faults over ``window`` seconds: each kind at least once, then about
    ``per_minute`` more a minute, weighted by kind. Sorted by time.

    The first of each kind falls between 10 % and 80 % of the window, so the workers
    are busy when it hits and there is time left to see its effects.
    """
    if not kinds:
        return []
    rng = random.Random(seed)
    faults = [
        Fault(rng.uniform(0.1, 0.8) * window, kind, rng.random(), rng.random()) for kind in kinds
    ]
    weights = [_WEIGHTS[kind] for kind in kinds]
    extra_count = round(per_minute * window / 60.0)
    for _ in range(extra_count):
        kind = rng.choices(kinds, weights)[0]
        faults.append(Fault(rng.uniform(0.05, 0.9) * window, kind, rng.random(), rng.random()))
    return sorted(faults, key=lambda fault: (fault.at, fault.kind))
