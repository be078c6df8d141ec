"""``tasktrail map``: run a function over the rows of a CSV or JSON-lines file."""

from __future__ import annotations

import csv
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from ..errors import AppImportError, ConfigurationError, InvalidArguments
from ..mapping import ItemResult, MapRun
from ..task import Task
from ..worker import WorkerConfig
from . import cli

RESULT_COLUMNS = ("status", "result", "error", "attempts", "runtime")


def load_function(spec: str) -> Callable[..., Any]:
    """Import ``module:function``."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppImportError(f"the function must look like module:function, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error while importing the user's module
        raise AppImportError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    func = getattr(module, attribute, None)
    if func is None:
        raise AppImportError(f"module {module_name!r} has no function {attribute!r}")
    if isinstance(func, Task):
        return func.func  # a registered task maps as its function
    if not callable(func):
        raise AppImportError(f"{spec} is a {type(func).__name__}, not a function")
    return func  # type: ignore[no-any-return]


def read_items(path: Path, kind: str) -> tuple[list[Any], list[str] | None]:
    """The items of an input file and, for CSV, its header."""
    try:
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidArguments(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        if kind == "csv":
            reader = csv.DictReader(handle)
            header = reader.fieldnames
            if not header:
                raise InvalidArguments(f"{path} is empty: a CSV input needs a header row")
            if len(set(header)) != len(header) or any(not name for name in header):
                raise InvalidArguments(
                    f"{path}: the header must name every column once, got {header}"
                )
            items = []
            for line, row in enumerate(reader, start=2):
                if None in row or any(value is None for value in row.values()):
                    raise InvalidArguments(
                        f"{path}, line {line}: {len(header)} columns expected, "
                        "found a different number"
                    )
                items.append(dict(row))
            return items, list(header)
        items = []
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                items.append(json.loads(text))
            except json.JSONDecodeError as exc:
                raise InvalidArguments(f"{path}, line {line}: not JSON ({exc.msg})") from None
        return items, None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def write_results(
    out: TextIO, kind: str, header: list[str] | None, results: Iterator[ItemResult]
) -> Iterator[ItemResult]:
    """Write each result as it comes (and pass it on, for the progress display)."""
    writer = None
    if kind == "csv":
        columns = [*(header or []), *RESULT_COLUMNS]
        writer = csv.writer(out)
        writer.writerow(columns)
    for result in results:
        runtime = round(result.runtime, 6) if result.runtime is not None else None
        outcome = {
            "status": result.status,
            "result": result.result,
            "error": result.error,
            "attempts": result.attempts,
            "runtime": runtime,
        }
        if writer is not None:
            row = result.item if isinstance(result.item, dict) else {}
            writer.writerow(
                [row.get(name, "") for name in header or []]
                + [_cell(outcome[name]) for name in RESULT_COLUMNS]
            )
        else:
            out.write(json.dumps({"input": result.item, **outcome}, ensure_ascii=False) + "\n")
        yield result


class _Progress:
    """A live progress bar on a terminal; nothing otherwise."""

    def __init__(self, total: int, done: int) -> None:
        self.enabled = sys.stderr.isatty()
        self.failed = 0
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("map"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task("map", total=total, completed=done, failed=0, rate="")
        self._started: float | None = None
        self._count = 0

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def advance(self, result: ItemResult) -> None:
        if result.status != "succeeded":
            self.failed += 1
        if not self.enabled:
            return
        import time

        now = time.monotonic()
        started = self._started = self._started or now
        self._count += 1
        elapsed = now - started
        rate = f"{self._count / elapsed:.0f}/s" if elapsed > 0.5 else ""
        self._progress.update(self._task, advance=1, failed=self.failed, rate=rate)


@cli.command("map")
@click.argument("function")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Path(path_type=Path),
    help="Write one row per input row here (default: stdout).",
)
@click.option(
    "--format",
    "kind",
    type=click.Choice(["csv", "jsonl"]),
    help="Input format (default: from the extension; .jsonl/.ndjson are JSON lines).",
)
@click.option("--processes", "-p", type=int, help="Processes to fork (default: CPU count).")
@click.option("--timeout", type=float, help="Seconds an item may run before its process is killed.")
@click.option("--retries", type=int, default=0, show_default=True, help="Retries of a failed item.")
@click.option(
    "--state",
    type=click.Path(path_type=Path),
    help="The run's state file (default: OUTPUT.state.db, or INPUT.state.db).",
)
@click.option("--retry-failed", is_flag=True, help="Run the items that failed before again.")
@click.option("--unordered", is_flag=True, help="Write results as they finish, not in input order.")
def map_command(
    function: str,
    input_path: Path,
    output: Path | None,
    kind: str | None,
    processes: int | None,
    timeout: float | None,
    retries: int,
    state: Path | None,
    retry_failed: bool,
    unordered: bool,
) -> None:
    """Run FUNCTION (module:function) over the rows of INPUT in parallel, on this machine.

    A CSV row (with a header) becomes keyword arguments; a JSON line an object (keyword
    arguments), an array (positional ones) or one value. Interrupt it and run the same
    command again: it carries on, never redoing a finished row.
    """  # fmt: skip
    kind = kind or ("jsonl" if input_path.suffix.lower() in (".jsonl", ".ndjson") else "csv")
    func = load_function(function)
    if processes is not None:
        WorkerConfig(processes=processes)  # refuses 0, which MapRun reads as "CPU count"
    items, header = read_items(input_path, kind)
    if output is not None:
        directory = output.absolute().parent
        if not directory.is_dir() or not os.access(directory, os.W_OK):
            raise ConfigurationError(
                f"cannot write {output}: {directory} is not a writable directory"
            )
    state = state or Path(f"{output or input_path}.state.db")
    run = MapRun(func, processes=processes, timeout=timeout, retries=retries, state=state)
    with run:
        run.resume()
        if retry_failed:
            run.retry_failed()
        total = run.submit(items)
        done = len(
            run.app.jobs(
                task=run.task.name, status=("succeeded", "failed", "cancelled"), limit=None
            )
        )
        partial = Path(f"{output}.partial") if output else None
        progress = _Progress(total, done)
        try:
            out = open(partial, "w", newline="", encoding="utf-8") if partial else sys.stdout  # noqa: SIM115
            with progress:
                for result in write_results(
                    out, kind, header, run.results(total, ordered=not unordered)
                ):
                    progress.advance(result)
            if partial is not None:
                out.close()
                os.replace(partial, output)  # type: ignore[arg-type]
        except KeyboardInterrupt:
            raise click.ClickException(
                f"interrupted; run the same command again to carry on (state: {state})"
            ) from None
    click.echo(
        f"{total} rows: {total - progress.failed} succeeded, {progress.failed} failed"
        + (f"; written to {output}" if output else ""),
        err=True,
    )
