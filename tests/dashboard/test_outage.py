"""The dashboard through a database outage (PostgreSQL behind a proxy the test cuts):
pages answer 503 and an open page shows the banner; once the database is back the
server answers again by itself and the page catches up, without a reload."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import tasktrail
from tasktrail.dashboard import create_app
from tests.integration import tasks
from tests.integration.conftest import pg_app, proxy  # noqa: F401  (fixtures)
from tests.integration.proxy import Proxy

pytestmark = pytest.mark.postgres


def test_an_outage_shows_the_banner_and_the_page_recovers(
    pg_app: tasktrail.App,  # noqa: F811
    proxy: Proxy,  # noqa: F811
    serve: Callable[[Any], str],
    page: Any,
) -> None:
    from playwright.sync_api import expect

    job = tasks.square.enqueue(9, ref=("website", 9))
    through_proxy = tasktrail.App(proxy.dsn)
    try:
        base = serve(create_app(through_proxy, refresh_seconds=0.3))
        page.goto(f"{base}/jobs/{job.id}")
        expect(page.locator("h1 .badge")).to_have_text("queued")
        expect(page.locator("#banner")).to_be_hidden()

        proxy.cut()
        expect(page.locator("#banner")).to_be_visible()
        expect(page.locator("#banner")).to_contain_text("database is unreachable")
        down = page.request.get(f"{base}/jobs/{job.id}")
        assert down.status == 503 and "unreachable" in down.text()
        pg_app.cancel(job.id, reason="while the dashboard could not see")

        proxy.restore()
        expect(page.locator("#banner")).to_be_hidden(timeout=20_000)
        expect(page.locator("h1 .badge")).to_have_text("cancelled", timeout=20_000)
        assert page.request.get(f"{base}/jobs/{job.id}").status == 200
    finally:
        through_proxy.close()
