"""Helpers of the dashboard tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Where screenshots go: test artifacts, not part of the repository.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def shoot(page: Any, name: str) -> Path:
    """A full-page screenshot of ``page`` as test-artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
