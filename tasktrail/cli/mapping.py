"""``tasktrail map``: run a function over the rows of a CSV or JSON-lines file."""

from __future__ import annotations

import contextlib
import csv
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import click

from ..errors import AppImportError, ConfigurationError, InvalidArguments
from ..logs import LogFormat, setup_logging
from ..mapping import ItemResult, MapRun
from ..task import Task
from ..worker import WorkerConfig
from . import cli, log_format_option

#: The columns after the input's in the output, and in the ``--failed-out`` file.
RESULT_COLUMNS = ("status", "result", "error", "attempts", "runtime")
FAILED_COLUMNS = ("error", "attempts", "index")


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


def outcome_values(result: ItemResult) -> dict[str, Any]:
    """An item's columns in the output (``RESULT_COLUMNS``)."""
    return {
        "status": result.status,
        "result": result.result,
        "error": result.error,
        "attempts": result.attempts,
        "runtime": round(result.runtime, 6) if result.runtime is not None else None,
    }


def failure_values(result: ItemResult) -> dict[str, Any]:
    """A failed item's columns in the ``--failed-out`` file (``FAILED_COLUMNS``)."""
    return {"error": result.error, "attempts": result.attempts, "index": result.index}


class RowWriter:
    """Writes items in the input's format, each followed by the given columns.

    CSV: the header, then per item its input columns and the values. JSON lines: per
    item one object, ``{"input": item, **values}``.
    """

    def __init__(
        self, out: TextIO, kind: str, header: list[str] | None, columns: Sequence[str]
    ) -> None:
        self._out = out
        self._header = header or []
        self._columns = columns
        self._csv = csv.writer(out) if kind == "csv" else None
        if self._csv is not None:
            self._csv.writerow([*self._header, *columns])

    def write(self, item: Any, values: dict[str, Any]) -> None:
        if self._csv is None:
            self._out.write(json.dumps({"input": item, **values}, ensure_ascii=False) + "\n")
            return
        row = item if isinstance(item, dict) else {}
        self._csv.writerow(
            [row.get(name, "") for name in self._header]
            + [_cell(values[name]) for name in self._columns]
        )


@contextlib.contextmanager
def complete_file(path: Path | None) -> Iterator[TextIO]:
    """A file written as ``PATH.partial`` and renamed to ``path`` only if the block ends
    without an error, so ``path`` is never a half-written file; stdout for ``None``."""
    if path is None:
        yield sys.stdout
        return
    partial = Path(f"{path}.partial")
    with contextlib.ExitStack() as cleanup:
        # A run that stopped part-way leaves no .partial: the next run writes it anew.
        cleanup.callback(partial.unlink, missing_ok=True)
        with open(partial, "w", newline="", encoding="utf-8") as out:
            yield out
        os.replace(partial, path)


def write_results(
    results: Iterable[ItemResult],
    output: RowWriter,
    failed: RowWriter | None,
    progress: _Progress,
) -> None:
    """Write each result as it comes: every item to ``output``, a failed one also to
    ``failed``."""
    for result in results:
        output.write(result.item, outcome_values(result))
        if failed is not None and not result.ok:
            failed.write(result.item, failure_values(result))
        progress.advance(result)


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


def check_writable(path: Path) -> None:
    directory = path.absolute().parent
    if not directory.is_dir() or not os.access(directory, os.W_OK):
        raise ConfigurationError(f"cannot write {path}: {directory} is not a writable directory")


def check_distinct_files(files: dict[str, Path | None]) -> None:
    """Refuse two of the command's files being one: writing one would destroy the other."""
    seen: dict[Path, str] = {}
    for role, path in files.items():
        if path is None:
            continue
        resolved = path.resolve()
        if resolved in seen:
            raise ConfigurationError(f"{role} and {seen[resolved]} are the same file ({path})")
        seen[resolved] = role


def check_failed_columns(path: Path, header: list[str] | None) -> None:
    clash = [name for name in FAILED_COLUMNS if name in (header or [])]
    if clash:
        raise InvalidArguments(
            f"{path} has a column named {clash[0]!r}, which --failed-out adds itself "
            f"({', '.join(FAILED_COLUMNS)}); rename that column"
        )


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
    "--failed-out",
    "failed_out",
    metavar="FILE",
    type=click.Path(path_type=Path),
    help="Also write the rows that failed here, in the input's format, each with its "
    "error, attempts and index (0-based position in INPUT).",
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
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Run again the rows that failed in earlier runs on this state (same INPUT).",
)
@click.option("--unordered", is_flag=True, help="Write results as they finish, not in input order.")
@log_format_option
def map_command(
    function: str,
    input_path: Path,
    output: Path | None,
    failed_out: Path | None,
    kind: str | None,
    processes: int | None,
    timeout: float | None,
    retries: int,
    state: Path | None,
    retry_failed: bool,
    unordered: bool,
    log_format: LogFormat,
) -> None:
    """Run FUNCTION (module:function) over the rows of INPUT in parallel, on this machine.

    A CSV row (with a header) becomes keyword arguments; a JSON line an object (keyword
    arguments), an array (positional ones) or one value. Interrupt it and run the same
    command again: it carries on, never redoing a finished row.

    Failed rows stay failed in the state: --failed-out FILE lists them with their errors
    (each complete run rewrites FILE: no rows when none failed), and --retry-failed added
    to the same command runs only them again.
    """  # fmt: skip
    setup_logging(logging.WARNING, log_format)
    kind = kind or ("jsonl" if input_path.suffix.lower() in (".jsonl", ".ndjson") else "csv")
    func = load_function(function)
    if processes is not None:
        WorkerConfig(processes=processes)  # refuses 0, which MapRun reads as "CPU count"
    check_distinct_files({"INPUT": input_path, "--output": output, "--failed-out": failed_out})
    items, header = read_items(input_path, kind)
    for written in (output, failed_out):
        if written is not None:
            check_writable(written)
    if failed_out is not None:
        check_failed_columns(input_path, header)
    state = state or Path(f"{output or input_path}.state.db")
    run = MapRun(func, processes=processes, timeout=timeout, retries=retries, state=state)
    with run:
        run.resume()
        total = run.submit(items)  # first: it refuses a state that holds another input
        if retry_failed:
            run.retry_failed()
        done = len(
            run.app.jobs(
                task=run.task.name, status=("succeeded", "failed", "cancelled"), limit=None
            )
        )
        progress = _Progress(total, done)
        try:
            with contextlib.ExitStack() as files, progress:
                rows = RowWriter(
                    files.enter_context(complete_file(output)), kind, header, RESULT_COLUMNS
                )
                failed_rows = None
                if failed_out is not None:
                    failed_file = files.enter_context(complete_file(failed_out))
                    failed_rows = RowWriter(failed_file, kind, header, FAILED_COLUMNS)
                write_results(
                    run.results(total, ordered=not unordered), rows, failed_rows, progress
                )
        except KeyboardInterrupt:
            raise click.ClickException(
                f"interrupted; run the same command again to carry on (state: {state})"
            ) from None
    summary = f"{total} rows: {total - progress.failed} succeeded, {progress.failed} failed"
    if output is not None:
        summary += f"; written to {output}"
    if failed_out is not None:
        summary += f"; failed rows in {failed_out}"
    click.echo(summary, err=True)
