"""The dashboard in a real browser (headless Chromium), on both backends: search a
business object, open its failed job and read the traceback, retry it with the token
and see the `retried` event appear, be refused without it; pages refresh in place.
A screenshot of each page is written to test-artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import tasktrail
from tasktrail.dashboard import create_app
from tests.integration import tasks
from tests.integration.conftest import app, worker_dsn, workers  # noqa: F401  (fixtures)

from .helpers import shoot
from .test_pages import Populated, populated  # noqa: F401  (fixture)

TOKEN = "ops:s3cret-token"


def test_a_business_user_finds_a_failed_job_and_retries_it(
    app: tasktrail.App,  # noqa: F811
    populated: Populated,  # noqa: F811
    serve: Callable[[Any], str],
    page: Any,
    dsn: str,
) -> None:
    from playwright.sync_api import expect

    backend = "postgres" if dsn.startswith("postgresql") else "sqlite"
    base = serve(create_app(app, tokens=TOKEN, refresh_seconds=0.5))
    page.goto(base + "/")
    expect(page.locator("h1")).to_have_text("Overview")
    shoot(page, f"overview-{backend}")

    page.fill("input[name=q]", "website:3")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/refs/website/3$"))
    expect(page.locator("table.timeline tbody tr")).to_have_count(4)
    expect(page.locator("table.timeline")).to_contain_text("article:302")
    shoot(page, f"ref-{backend}")

    page.click(f'table.timeline a[href="/jobs/{populated.failed}"]')
    page.wait_for_url(re.compile(rf"/jobs/{populated.failed}$"))
    expect(page.locator("pre.traceback")).to_contain_text("RuntimeError: the API said no")
    expect(page.locator("#retry")).to_have_count(0)  # not signed in: no actions offered
    refused = page.request.post(f"{base}/jobs/{populated.failed}/retry")
    assert refused.status == 401
    shoot(page, f"job-{backend}")

    page.goto(base + "/login")
    page.fill("input[name=token]", "s3cret-token")
    page.click("button:has-text('Sign in')")
    page.wait_for_url(base + "/")
    page.goto(f"{base}/jobs/{populated.failed}")
    page.click("#retry")
    page.wait_for_url(re.compile(rf"/jobs/{populated.failed}$"))
    expect(page.locator("table.events")).to_contain_text("retried")
    expect(page.locator("table.events")).to_contain_text("dashboard:ops")
    [retried] = [e for e in app.events(populated.failed) if e.kind == "retried"]
    assert retried.detail["by"] == "dashboard:ops"

    for path in ("/jobs", "/tasks", "/workers", "/schedules", "/refs/website/999"):
        page.goto(base + path)
        shoot(page, f"{path.strip('/').replace('/', '-')}-{backend}")
    expect(page.locator("p.problem")).to_contain_text("website:999")


def test_a_page_follows_the_job_without_a_reload(
    app: tasktrail.App,  # noqa: F811
    serve: Callable[[Any], str],
    page: Any,
) -> None:
    from playwright.sync_api import expect

    job = tasks.square.enqueue(5, ref=("website", 7))
    base = serve(create_app(app, refresh_seconds=0.3))
    page.goto(f"{base}/jobs/{job.id}")
    expect(page.locator("h1 .badge")).to_have_text("queued")
    page.evaluate("window.__same_document = true")
    app.cancel(job.id, reason="changed my mind")
    expect(page.locator("h1 .badge")).to_have_text("cancelled")
    expect(page.locator("table.events")).to_contain_text("changed my mind")
    assert page.evaluate("window.__same_document") is True  # refreshed in place
