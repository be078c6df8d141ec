"""The Django app: tasks found in every installed app's ``tasks`` module, and tasktrail's
tables brought up to date by ``manage.py migrate``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


class TasktrailConfig(AppConfig):
    name = "tasktrail.contrib.django"
    label = "tasktrail"
    verbose_name = "tasktrail"

    def ready(self) -> None:
        autodiscover_modules("tasks")  # where the @app.task functions are declared
        post_migrate.connect(_migrate, sender=self, dispatch_uid="tasktrail-migrate")


def _migrate(sender: AppConfig, **kwargs: Any) -> None:
    """After ``manage.py migrate``: tasktrail's own migrations (none when it is current).
    Its first Django migration installs the schema; this keeps it current after an
    upgrade of tasktrail, with no Django migration of its own for each."""
    from . import app

    app.backend.migrate()
