"""Printing for the CLI: tables for people, JSON for scripts.

On a terminal, tables are drawn with rich; otherwise they are plain aligned text, one
row per line, so ``grep`` and ``awk`` work. ``--json`` prints one JSON document.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

__all__ = ["Column", "echo_json", "print_table", "short_time"]

Column = tuple[str, str]  # (key, header)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot print {type(value).__name__} as JSON")


def echo_json(document: Any) -> None:
    click.echo(json.dumps(document, default=_default, ensure_ascii=False, indent=2))


def short_time(value: str | datetime | None) -> str:
    """``2026-11-28 09:30:01.123`` (UTC) for tables."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, datetime):
        return short_time(value)
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], title: str = "") -> None:
    """Print ``rows`` with the given columns, as a rich table on a terminal."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title or None, show_lines=False)
        for _, header in columns:
            table.add_column(header, overflow="fold")
        for row_cells in cells:
            table.add_row(*row_cells)
        Console().print(table)
        return
    if title:
        click.echo(title)
    headers = [header for _, header in columns]
    widths = [
        max(len(header), *(len(row[i]) for row in cells)) if cells else len(header)
        for i, header in enumerate(headers)
    ]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row_cells in cells:
        line = "  ".join(
            c.replace("\n", " ").ljust(w) for c, w in zip(row_cells, widths, strict=True)
        )
        click.echo(line.rstrip())
