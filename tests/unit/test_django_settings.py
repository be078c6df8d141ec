"""tasktrail.contrib.django's reading of Django's settings: the DSN of a database alias,
and the errors that name what is wrong (no database is touched)."""

from __future__ import annotations

import pytest

django = pytest.importorskip("django", reason="the django extra is not installed")

from django.conf import settings  # noqa: E402

if not settings.configured:  # before the integration is imported: its app reads them
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
    )

from tasktrail.contrib.django import settings_dsn  # noqa: E402
from tasktrail.errors import ConfigurationError  # noqa: E402

PG = "django.db.backends.postgresql"


@pytest.mark.parametrize(
    ("database", "dsn"),
    [
        ({"ENGINE": PG, "NAME": "shop", "USER": "app", "HOST": "db", "PORT": 5433},
         "postgresql://app@db:5433/shop"),
        ({"ENGINE": PG, "NAME": "shop", "USER": "app", "PASSWORD": "p@ss:w/rd", "HOST": "db"},
         "postgresql://app:p%40ss%3Aw%2Frd@db/shop"),
        ({"ENGINE": PG, "NAME": "shop", "HOST": "/run/postgresql", "PORT": "5432"},
         "postgresql:///shop?host=%2Frun%2Fpostgresql&port=5432"),
        ({"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/shop.db"}, "sqlite:////srv/shop.db"),
    ],
)  # fmt: skip
def test_the_dsn_of_a_database_alias(database: dict[str, object], dsn: str) -> None:
    assert settings_dsn("default", {"default": database}) == dsn


def test_a_database_tasktrail_cannot_use_is_named() -> None:
    mysql = {"default": {"ENGINE": "django.db.backends.mysql"}}
    with pytest.raises(ConfigurationError) as refused:
        settings_dsn("default", mysql)
    assert "'django.db.backends.mysql'" in str(refused.value)
    assert "postgresql (with psycopg 3) or sqlite3" in str(refused.value)
    with pytest.raises(ConfigurationError) as missing:
        settings_dsn("reports")
    assert "'reports', which is not in DATABASES (default)" in str(missing.value)
