"""Two websites, each created with its refresh job in one transaction.atomic(): the
first rolled back, the second committed. Prints their ids as JSON."""

import json
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from shop.models import Website
from shop.tasks import refresh


class _RolledBack(Exception):
    pass


class Command(BaseCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():
                gone = Website.objects.create(url="https://gone.example")
                refresh.enqueue(gone.id, ref=("website", gone.id))
                raise _RolledBack
        except _RolledBack:
            pass
        with transaction.atomic():
            kept = Website.objects.create(url="https://kept.example")
            handle = refresh.enqueue(kept.id, ref=("website", kept.id))
        self.stdout.write(json.dumps({"gone": gone.id, "kept": kept.id, "job": handle.id}))
