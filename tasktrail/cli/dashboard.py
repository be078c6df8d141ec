"""``tasktrail dashboard``: the web dashboard (the ``dashboard`` extra)."""

from __future__ import annotations

import click

from ..errors import ConfigurationError
from . import AppContext, cli, common_options


@cli.command("dashboard")
@common_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--token",
    envvar="TASKTRAIL_DASHBOARD_TOKEN",
    help="NAME:SECRET (several, comma-separated) allowing actions: retry, cancel, pause. "
    "Without one the dashboard only reads.  [env TASKTRAIL_DASHBOARD_TOKEN]",
)
@click.option(
    "--refresh", type=click.FloatRange(0), default=5.0, show_default=True,
    help="Seconds between the pages' refreshes in place (0: never).",
)  # fmt: skip
def dashboard_command(
    ctx: AppContext, host: str, port: int, token: str | None, refresh: float
) -> None:
    """Serve the dashboard: business objects, jobs, tasks, workers, schedules, /metrics."""
    try:
        import uvicorn

        from ..dashboard import create_app, parse_tokens
    except ImportError as exc:
        raise ConfigurationError(
            f"the dashboard needs its extra: pip install 'tasktrail[dashboard]' ({exc})"
        ) from exc
    tokens = parse_tokens(token)
    web = create_app(ctx.reader(), tokens=tokens, refresh_seconds=refresh)
    mode = f"actions allowed for {', '.join(t.name for t in tokens)}" if tokens else "read-only"
    click.echo(f"tasktrail dashboard on http://{host}:{port}/ ({mode})", err=True)
    uvicorn.run(web, host=host, port=port, log_level="warning")
