"""tasktrail's tables, by the same setup as ``tasktrail migrate`` (its own connection:
the migration is not atomic, so no transaction of Django's holds a lock meanwhile)."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def install(apps: Any, schema_editor: Any) -> None:
    from tasktrail.contrib.django import app

    app.backend.migrate()


class Migration(migrations.Migration):
    atomic = False
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunPython(install, migrations.RunPython.noop, elidable=False)]
