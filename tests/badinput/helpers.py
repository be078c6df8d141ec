"""Helpers of the bad-input suite shared by its modules."""

from __future__ import annotations

import os

from click.testing import Result

INJECTION = "x'; DROP TABLE jobs; --"

#: Every TASKTRAIL_* variable unset, so that the machine's environment cannot interfere.
CLEAN_ENV: dict[str, str | None] = {
    name: None for name in os.environ if name.startswith("TASKTRAIL_")
}


def assert_one_line_error(result: Result, status: int, message: str) -> None:
    """The command failed with ``status``, printing only ``Error: …message…`` on stderr."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == status, (result.exit_code, result.stdout, result.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {result.stderr!r}"
    assert lines[0].startswith("Error: "), lines[0]
    assert message in lines[0], lines[0]
    assert result.stdout == ""
