"""A minimal project: one app with one model, tasktrail, and PostgreSQL from the
environment (the test creates a database of its own for it)."""

import os

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["tasktrail.contrib.django", "shop"]
if os.environ.get("SHOP_DB_ENGINE") == "sqlite3":
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SHOP_DB_NAME"]}
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["SHOP_DB_NAME"],
            "USER": os.environ.get("SHOP_DB_USER", "postgres"),
            "PASSWORD": os.environ.get("SHOP_DB_PASSWORD", ""),
            "HOST": os.environ.get("SHOP_DB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("SHOP_DB_PORT", "5432"),
        }
    }
TASKTRAIL = {"schema": "tasktrail"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
