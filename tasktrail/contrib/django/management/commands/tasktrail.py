"""``python manage.py tasktrail <command> …``: tasktrail's CLI on the project's app."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run a tasktrail command (worker, jobs, show, tree, stats, maintain, dashboard…) "
        "on this project's app: python manage.py tasktrail worker -p 4"
    )

    def run_from_argv(self, argv: list[str]) -> None:
        # Every argument is the CLI's: no parsing of Django's own in between.
        from django.db import connections

        from tasktrail.cli import cli

        os.environ.setdefault("TASKTRAIL_APP", "tasktrail.contrib.django:app")
        # The worker forks its processes from this one: none may share its connections.
        connections.close_all()
        cli.main(args=argv[2:], prog_name=f"{os.path.basename(argv[0])} tasktrail")

    def handle(self, *args: Any, **options: Any) -> None:  # pragma: no cover - see above
        self.run_from_argv(["manage.py", "tasktrail", *args])
