"""A minimal Django project with tasktrail: one app (``shop``) with one model.

The database: SQLite (``shop.db`` beside manage.py) by default, offline; PostgreSQL with
``SHOP_DATABASE=postgresql://user:password@host:5432/name`` (psycopg 3). tasktrail keeps
its jobs in the same database, so an enqueue inside ``transaction.atomic()`` commits or
rolls back with the rows written beside it.
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

SECRET_KEY = "django-shop-example-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["tasktrail.contrib.django", "shop"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TASKTRAIL = {"schema": "tasktrail"}

_url = os.environ.get("SHOP_DATABASE", "")
if _url.startswith("postgresql://"):
    _parts = urlsplit(_url)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _parts.path.lstrip("/"),
            "USER": unquote(_parts.username or ""),
            "PASSWORD": unquote(_parts.password or ""),
            "HOST": _parts.hostname or "",
            "PORT": str(_parts.port or ""),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _url.removeprefix("sqlite:///") or str(Path(__file__).parents[1] / "shop.db"),
        }
    }
