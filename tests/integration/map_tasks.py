"""Functions mapped by test_map.py (importable: `tasktrail map tests.integration.map_tasks:…`)."""

from __future__ import annotations

import os
import time


def double(n: int) -> int:
    return int(n) * 2


def slower_first(n: int, count: int) -> int:
    """Earlier items take longer, so they finish after later ones."""
    time.sleep(0.01 * (int(count) - int(n)))
    return int(n)


def fail_on_odd(n: int) -> int:
    if int(n) % 2:
        raise ValueError(f"{n} is odd")
    return int(n)


def fetch(url: str, user: str) -> dict[str, str]:
    """A CSV row's columns arrive as keyword arguments."""
    time.sleep(0.02)
    if "broken" in url:
        raise ConnectionError(f"{url}: connection refused")
    return {"user": user, "logo": f"{url}/logo.png"}


def record(n: str, path: str) -> int:
    """Append this item's number to ``path`` (to count runs from outside), then sleep."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{n} {os.getpid()}\n")
    time.sleep(0.05)
    return int(n)


def fail_odd_until_marked(n: str, marker: str, **other_columns: str) -> int:
    """Odd numbers fail while the file ``marker`` does not exist."""
    if int(n) % 2 and not os.path.exists(marker):
        raise RuntimeError(f"{n} is odd")
    return int(n)
