"""Fixtures of the dashboard tests: a real server (uvicorn on a free port) and a real
browser (Debian's headless Chromium, driven by Playwright; no browser download)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

#: Chromium's flags on a machine with no way out to the internet: without the
#: background-networking ones it keeps trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    named = os.environ.get("TASKTRAIL_TEST_CHROMIUM") or shutil.which("chromium")
    if named:
        return named
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """``serve(asgi_app)`` runs it under uvicorn on a free port of 127.0.0.1 until the
    test ends, and returns its base URL."""
    import uvicorn

    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(asgi_app: Any) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"the dashboard server did not start on port {port}")
            time.sleep(0.01)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium for the whole session."""
    path = chromium_path()
    if path is None:
        message = "no Chromium: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    driver = sync_playwright().start()
    try:
        launched = driver.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
    finally:
        driver.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A new page in a new browser context (its own cookies)."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()
