"""The functions of the micro-task scenario (``python -m bench --scenarios map``): the
same module-level functions for tasktrail's ``app.map``, ``multiprocessing.Pool`` and
``ProcessPoolExecutor``."""

from __future__ import annotations

import time


def nap(seconds: float) -> float:
    """An I/O-like item: sleeps, returns what it was given."""
    time.sleep(seconds)
    return seconds


def square(number: int) -> int:
    """A trivial item: the cost is all in the hand-over."""
    return number * number
