"""The dashboard through a database outage (PostgreSQL behind a proxy the test cuts):
pages answer 503 and an open page shows the banner; once the database is back the
server answers again by itself and the page catches up, without a reload."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tasktrail
from tasktrail.dashboard import create_app
from tests.integration import tasks
from tests.integration.proxy import Proxy

pytestmark = pytest.mark.postgres


@pytest.fixture
def direct(pg_dsn: str) -> Iterator[tasktrail.App]:
    tasks.app.configure(pg_dsn)
    try:
        yield tasks.app
    finally:
        tasks.app.close()


@pytest.fixture
def proxy(pg_dsn: str) -> Iterator[Proxy]:
    relay = Proxy(pg_dsn)
    relay.start()
    try:
        yield relay
    finally:
        relay.close()


def test_an_outage_shows_the_banner_and_the_page_recovers(
    direct: tasktrail.App, proxy: Proxy, serve: Callable[[Any], str], page: Any
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
        direct.cancel(job.id, reason="while the dashboard could not see")

        proxy.restore()
        expect(page.locator("#banner")).to_be_hidden(timeout=20_000)
        expect(page.locator("h1 .badge")).to_have_text("cancelled", timeout=20_000)
        assert page.request.get(f"{base}/jobs/{job.id}").status == 200
    finally:
        through_proxy.close()
