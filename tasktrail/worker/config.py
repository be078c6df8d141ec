"""How a worker client runs: :class:`WorkerConfig`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError

__all__ = ["MAX_PROCESSES", "MAX_RESERVE", "WorkerConfig"]

MAX_PROCESSES = 512
MAX_RESERVE = 100_000
#: The default reserve, per process: a ceiling high enough for children's queues of
#: sub-millisecond jobs (depth), which the flow reaches only for those.
DEFAULT_RESERVE_PER_PROCESS = 64


def _check_name(name: Any) -> None:
    """A worker name is shown in history: printable text, at most 200 characters."""
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ConfigurationError(f"worker name must be 1 to 200 characters, got {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(f"worker name {name!r} is not valid UTF-8 text") from None
    if not name.isprintable():
        raise ConfigurationError(f"worker name {name!r} has control characters")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker client runs. Every field has a ``tasktrail worker`` option.

    Attributes:
        processes: child processes forked (the bound on jobs running at once).
        reserve: the most jobs held at once: running, queued in the children, and
            buffered (default ``64 * processes``). The worker buffers one job per
            process; more is held only as the children's queues of jobs shorter than
            a round trip (see :mod:`.flow`).
        queues: the queues served; empty means every queue.
        name: the worker's name in history (default ``host:pid``).
        grace: seconds running jobs get to finish on shutdown before being killed.
        kill_grace: seconds between SIGTERM and SIGKILL for a child that must stop.
        max_tasks_per_child: replace a child after this many jobs (``None``: never).
        lease_seconds: a worker that has not heartbeated for this long is lost.
        poll_interval: longest wait between looks at the queue when idle.
        burst: exit once the queues hold no queued, reserved or running job.
        unknown_task_grace: seconds a job of a task this worker does not know (its code
            not deployed here yet) is put back, with a back-off and without using up an
            attempt, before it fails; counted from the first time a worker put it back.
        autoscale: ``(min, max)``: the worker scales its processes itself, one more each
            second while all are busy and jobs wait, one fewer when one has been idle
            for ``autoscale_idle`` seconds; it starts with ``processes`` brought into the
            range. ``None``: the count changes only when asked (``tasktrail workers
            scale``, SIGTTIN and SIGTTOU).
        autoscale_idle: seconds a process of an autoscaling worker stays idle before it
            is retired.
        metrics_port: serve the worker's own metrics (Prometheus text, ``/metrics``) on
            this TCP port, from the supervisor (see :mod:`.metrics`; needs the
            ``dashboard`` extra). ``0``: a free port, named in the log. ``None``: no
            metrics, nothing listens.
        metrics_host: the address ``metrics_port`` is bound on.
    """

    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    reserve: int | None = None
    queues: tuple[str, ...] = ()
    name: str | None = None
    grace: float = 30.0
    kill_grace: float = 5.0
    max_tasks_per_child: int | None = None
    lease_seconds: float = 30.0
    poll_interval: float = 1.0
    burst: bool = False
    unknown_task_grace: float = 3600.0
    autoscale: tuple[int, int] | None = None
    autoscale_idle: float = 10.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, maximum: int = 1_000_000) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
                raise ConfigurationError(
                    f"{name} must be an integer from 1 to {maximum:,}, got {value!r}"
                )

        def positive(name: str, value: Any, minimum: float = 0.0) -> None:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not minimum < value < 10 * 365 * 86400  # finite, and not absurd
            ):
                raise ConfigurationError(
                    f"{name} must be more than {minimum:g} seconds, got {value!r}"
                )

        # One supervisor forks and watches every process: past a few hundred it is a
        # mistake (or a fork bomb), not a configuration.
        positive_int("processes", self.processes, MAX_PROCESSES)
        if self.reserve is not None:
            positive_int("reserve", self.reserve, MAX_RESERVE)
        if self.max_tasks_per_child is not None:
            positive_int("max_tasks_per_child", self.max_tasks_per_child)
        positive("lease_seconds", self.lease_seconds, 0.5)
        positive("poll_interval", self.poll_interval)
        positive("kill_grace", self.kill_grace)
        positive("autoscale_idle", self.autoscale_idle)
        for name in ("grace", "unknown_task_grace"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 <= value < 10 * 365 * 86400
            ):
                raise ConfigurationError(f"{name} must be 0 or more seconds, got {value!r}")
        if self.autoscale is not None:
            if not isinstance(self.autoscale, tuple) or len(self.autoscale) != 2:
                raise ConfigurationError(
                    f"autoscale must be a pair (min, max), got {self.autoscale!r}"
                )
            low, high = self.autoscale
            positive_int("autoscale min", low, MAX_PROCESSES)
            positive_int("autoscale max", high, MAX_PROCESSES)
            if low > high:
                raise ConfigurationError(
                    f"autoscale min must not be more than max, got {low},{high}"
                )
        if isinstance(self.queues, str):
            raise ConfigurationError("queues must be a sequence of names, not one string")
        if self.name is not None:
            _check_name(self.name)
        if self.metrics_port is not None and (
            isinstance(self.metrics_port, bool)
            or not isinstance(self.metrics_port, int)
            or not 0 <= self.metrics_port <= 65535
        ):
            raise ConfigurationError(
                f"metrics_port must be a TCP port from 1 to 65535 (or 0: any free port), "
                f"got {self.metrics_port!r}"
            )
        if (
            not isinstance(self.metrics_host, str)
            or not self.metrics_host
            or not self.metrics_host.isprintable()
            or " " in self.metrics_host
        ):
            raise ConfigurationError(
                f"metrics_host must be a host name or IP address, got {self.metrics_host!r}"
            )

    @property
    def reserve_limit(self) -> int:
        return self.reserve_for(self.processes)

    @property
    def initial_processes(self) -> int:
        """The processes it starts with: ``processes``, within the autoscale range."""
        if self.autoscale is None:
            return self.processes
        low, high = self.autoscale
        return max(low, min(high, self.processes))

    def reserve_for(self, processes: int) -> int:
        """The reserve while running ``processes``: the default per process, or the
        configured reserve scaled in proportion (a worker that was given 2 processes
        and a reserve of 4 holds 6 with 3)."""
        if self.reserve is None:
            return DEFAULT_RESERVE_PER_PROCESS * processes
        if processes == self.processes:
            return self.reserve
        return max(1, min(MAX_RESERVE, round(self.reserve * processes / self.processes)))
