"""``python manage.py shop_demo``: the example in one command.

Creates two websites, each with its refresh job in one ``transaction.atomic()``: the
first block is rolled back (neither the row nor the job is left), the second commits
both. Then runs the worker through ``manage.py tasktrail worker --burst`` (its forked
processes read and write the model, and enqueue a follow-up in their own atomic block)
and prints what ran. ``--json`` prints the ids for scripts instead.
"""

import json
import subprocess
import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from shop.models import Website
from shop.tasks import refresh
from tasktrail.contrib.django import app


class _RolledBack(Exception):
    pass


class Command(BaseCommand):
    help = "Create two websites with their jobs (one rolled back), run the worker, show them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the ids as JSON.")
        parser.add_argument("--no-worker", action="store_true", help="Only enqueue.")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        try:
            with transaction.atomic():
                gone = Website.objects.create(url="https://gone.example")
                refresh.enqueue(gone.id, ref=("website", gone.id))
                raise _RolledBack  # e.g. a validation error after the enqueue
        except _RolledBack:
            pass
        with transaction.atomic():
            kept = Website.objects.create(url="https://kept.example")
            handle = refresh.enqueue(kept.id, ref=("website", kept.id))
        if not options["no_worker"]:
            # the worker, as you would run it: manage.py tasktrail worker
            subprocess.run(
                [
                    sys.executable,
                    sys.argv[0],
                    "tasktrail",
                    "worker",
                    "--burst",
                    "-p",
                    "2",
                    "--quiet",
                ],
                check=True,
            )
        if options["json"]:
            self.stdout.write(json.dumps({"gone": gone.id, "kept": kept.id, "job": handle.id}))
            return
        self.stdout.write(f"{gone.url}: rolled back with its job (neither exists)")
        self.stdout.write(f"{kept.url} (website {kept.id}): committed with its job {handle.id}")
        for job in app.jobs(ref=("website", kept.id), descendants=True, limit=None):
            self.stdout.write(f"  job {job.id} {job.task}: {job.status}, result {job.result!r}")
        kept.refresh_from_db()
        self.stdout.write(f"  website {kept.id}.comments = {kept.comments}")
