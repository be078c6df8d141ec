"""The worker: a supervisor process and its forked children.

:class:`WorkerConfig` is light (:mod:`tasktrail.worker.config`); the supervisor and
its pool load only when :class:`Supervisor` is first asked for, so ``import tasktrail``
does not pull them in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import WorkerConfig

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["Supervisor", "WorkerConfig"]


def __getattr__(name: str) -> Any:
    if name == "Supervisor":
        from .supervisor import Supervisor

        return Supervisor
    raise AttributeError(f"module 'tasktrail.worker' has no attribute {name!r}")
