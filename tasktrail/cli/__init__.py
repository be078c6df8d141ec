"""The ``tasktrail`` command.

Every command takes ``--dsn`` (or ``TASKTRAIL_DSN``) and ``--app module:app`` (or
``TASKTRAIL_APP``). With ``--app`` the DSN comes from the app unless ``--dsn`` overrides
it. Errors print one line on stderr and exit with status 1; usage errors exit with 2.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import click

from ..app import App
from ..clock import parse_duration, to_utc, utcnow
from ..config import PostgresDsn, SqliteDsn
from ..errors import AppImportError, ConfigurationError, InvalidArguments, TasktrailError

__all__ = ["AppContext", "cli", "load_app", "main", "parse_since"]

F = TypeVar("F", bound=Callable[..., Any])


def load_app(spec: str) -> App:
    """Import ``module:attribute`` and return the App it names.

    The current directory is put on ``sys.path`` first, as ``python -m`` would.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppImportError(
            f"--app must look like module:attribute (e.g. myproject.tasks:app), got {spec!r}"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error while importing the user's module
        raise AppImportError(
            f"cannot import module {module_name!r} for --app: {type(exc).__name__}: {exc}"
            + _where(exc)
        ) from exc
    try:
        app = getattr(module, attribute)
    except AttributeError:
        raise AppImportError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(app, App):
        raise AppImportError(f"{spec} is a {type(app).__name__}, not a tasktrail.App")
    return app


#: How many frames of the user's code an import error shows.
_FRAMES = 5


def _where(exc: BaseException) -> str:
    """Where in the user's code an import failed: the last frames of its traceback that
    are not Python's import machinery nor tasktrail (file, line, source line), and for
    a syntax error the line the parser stopped at."""
    machinery = (
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # tasktrail
        os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep,
    )
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen ")
        and not os.path.abspath(frame.filename).startswith(machinery)
    ]
    lines = []
    for frame in frames[-_FRAMES:]:
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    if isinstance(exc, SyntaxError) and exc.filename:
        lines.append(f'  File "{exc.filename}", line {exc.lineno}')
        if exc.text:
            lines.append(f"    {exc.text.strip()}")
    return ("\n" + "\n".join(lines)) if lines else ""


class AppContext:
    """Resolves the app and DSN from the common options, once per command."""

    def __init__(self, dsn: str | None, app_spec: str | None, schema: str | None) -> None:
        self.dsn = dsn
        self.app_spec = app_spec
        self.schema = schema
        self._app: App | None = None

    @property
    def has_tasks(self) -> bool:
        return self.app_spec is not None

    def reader(self) -> App:
        """The app of a command that only reads: it must not create a SQLite database
        where there is none (it would show an empty one as if it were the real one)."""
        app = self.app()
        parsed = app._parsed
        if isinstance(parsed, SqliteDsn) and not parsed.path.exists():
            raise ConfigurationError(
                f"no tasktrail database at {parsed.path.resolve()}: name yours with --dsn "
                "sqlite:///path.db or postgresql://…, TASKTRAIL_DSN, or --app module:app"
            )
        if isinstance(parsed, PostgresDsn) and app._backend is None:
            from ..backends.postgres.backend import PostgresBackend

            probe = PostgresBackend(parsed)  # not set up: that would create the schema
            try:
                missing = probe.schema_version() is None
            finally:
                probe.close()
            if missing:
                raise ConfigurationError(
                    f"no tasktrail schema {parsed.schema!r} in {parsed.url}: "
                    "create it with `tasktrail migrate`, or name yours with --schema "
                    "(TASKTRAIL_SCHEMA) or --dsn"
                )
        return app

    def app(self, need_tasks: bool = False) -> App:
        if self._app is None:
            if self.app_spec:
                app = load_app(self.app_spec)
                if self.dsn or self.schema:
                    if self.schema:
                        app._schema = self.schema
                    app.configure(self.dsn or app.dsn)
            elif need_tasks:
                raise AppImportError(
                    "this command needs your tasks: pass --app module:app (or set TASKTRAIL_APP)"
                )
            else:
                app = App(self.dsn, schema=self.schema)
            self._app = app
        return self._app

    def close(self) -> None:
        """Close the database connection the command opened, if it opened one."""
        if self._app is not None:
            self._app.close()


def common_options(command: F) -> F:
    """``--dsn``, ``--app`` and ``--schema``, passed to the command as ``ctx``."""

    @click.option(
        "--dsn",
        envvar="TASKTRAIL_DSN",
        help="Database: sqlite:///path.db or postgresql://…  [env TASKTRAIL_DSN]",
    )
    @click.option(
        "--app",
        "app_spec",
        envvar="TASKTRAIL_APP",
        metavar="MODULE:APP",
        help="Your tasktrail App.  [env TASKTRAIL_APP]",
    )
    @click.option(
        "--schema",
        envvar="TASKTRAIL_SCHEMA",
        help="PostgreSQL schema (default tasktrail).  [env TASKTRAIL_SCHEMA]",
    )
    @functools.wraps(command)
    def wrapper(dsn: str | None, app_spec: str | None, schema: str | None, **kwargs: Any) -> Any:
        context = AppContext(dsn, app_spec, schema)
        try:
            return command(context, **kwargs)
        finally:
            # Not left to garbage collection: the command may run inside a longer-lived
            # process (click's test runner, a script calling ``main``).
            context.close()

    return wrapper  # type: ignore[return-value]


def log_format_option(command: F) -> F:
    """``--log-format text|json`` (see :mod:`tasktrail.logs`)."""
    return click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        envvar="TASKTRAIL_LOG_FORMAT",
        show_envvar=True,
        help="Log lines as text, or as one JSON object per line (job id, task, ref, "
        "attempt, worker, pid) for log shippers.",
    )(command)


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(command)


def parse_since(text: str | None) -> datetime | None:
    """``1h`` (that long ago) or an ISO 8601 time (UTC if no offset is given)."""
    if text is None:
        return None
    try:
        return utcnow() - parse_duration(text)
    except InvalidArguments:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArguments(
            f"cannot read time {text!r}: use a duration ago (30m, 2h, 7d) or ISO 8601"
        ) from None
    if value.tzinfo is None:
        from datetime import timezone

        value = value.replace(tzinfo=timezone.utc)
    return to_utc(value)


def parse_window(text: str) -> timedelta:
    window = parse_duration(text)
    if window <= timedelta(0):
        raise InvalidArguments(f"window must be longer than zero, got {text!r}")
    return window


class _UsageError(click.UsageError):
    """A usage error (exit status 2) printed like every other error: one line on stderr."""

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message()}{hint}", file=file, err=file is None)


#: A group given no command prints its help (click 8.2 and later raise this for it).
_PRINTS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", _UsageError)


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, _UsageError | _PRINTS_HELP):
        return exc
    return _UsageError(exc.format_message(), exc.ctx)


class _Group(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _one_line(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TasktrailError as exc:
            raise click.ClickException(str(exc)) from exc
        except click.UsageError as exc:
            raise _one_line(exc) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tasktrail")
def cli() -> None:
    """tasktrail: jobs with full history in PostgreSQL or SQLite, run by forking workers."""


def main() -> None:
    cli()


# Importing the command modules registers them with ``cli``.
from . import admin, control, dashboard, jobs, mapping, schedules, worker  # noqa: E402, F401
