"""Importing this module leaves a trace: a worker must never import it for a crafted row.

It writes the file named by ``TASKTRAIL_TEST_IMPORT_MARKER`` (when set) on import.
"""

from __future__ import annotations

import os

_marker = os.environ.get("TASKTRAIL_TEST_IMPORT_MARKER")
if _marker:
    with open(_marker, "a", encoding="utf-8") as _file:
        _file.write(f"imported by {os.getpid()}\n")


def run(*args: object) -> None:
    """What a crafted row names."""
