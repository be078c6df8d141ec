"""The worker: a supervisor process and its forked children."""

from __future__ import annotations

from .config import WorkerConfig
from .supervisor import Supervisor

__all__ = ["Supervisor", "WorkerConfig"]
