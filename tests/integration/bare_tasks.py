"""An app whose tasks have their default names (``module.function``), as a new user's
do: for the CLI's bare task names."""

from __future__ import annotations

import tasktrail

app = tasktrail.App()


@app.task
def refresh_frontpage(site: int) -> int:
    return site


@app.task
def count_comments(article: int) -> int:
    return article
