"""Fixtures of the dashboard tests: a real server (uvicorn on a free port of 127.0.0.1)
and a real browser (Debian's headless Chromium, driven by Playwright).

Playwright never downloads a browser here: it launches the Chromium named by
``TASKTRAIL_TEST_CHROMIUM``, else the ``chromium`` on PATH, else ``/usr/bin/chromium``
(``apt-get install chromium chromium-driver``). Without one the browser tests are
skipped with that reason, except when ``CI`` is set: then they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_ENV = "TASKTRAIL_TEST_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_PACKAGES = "apt-get install chromium chromium-driver"

#: Chromium's flags here: no sandbox (root in a container), no GPU, /tmp instead of a
#: small /dev/shm, and, on a machine with no way out to the internet, none of the
#: background traffic (QUIC, first-run, component updates, sync) it would try to send.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

#: How long a server may take to start, and a page's actions and checks may wait.
SERVER_START_SECONDS = 10.0
PAGE_TIMEOUT_MS = 10_000


def chromium_path() -> str:
    """The Chromium to launch: $TASKTRAIL_TEST_CHROMIUM, ``chromium`` on PATH, or
    /usr/bin/chromium (which may not exist: the caller checks)."""
    return os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or DEFAULT_CHROMIUM


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """``serve(asgi_app)`` runs the app under uvicorn in a daemon thread, on a port of
    127.0.0.1 bound beforehand (so no other process can take it in between), waits
    until it accepts connections and returns its base URL, ``http://127.0.0.1:PORT``.
    Every server started is stopped when the test ends."""
    import uvicorn

    running: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def start(asgi_app: Any) -> str:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = uvicorn.Config(
            asgi_app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, name=f"uvicorn-{port}", daemon=True
        )
        running.append((server, thread, listener))
        thread.start()
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not server.started:
            if not thread.is_alive():
                pytest.fail(f"the server on port {port} stopped before it started (see its log)")
            if time.monotonic() > deadline:
                pytest.fail(f"the server on port {port} did not start in {SERVER_START_SECONDS} s")
            time.sleep(0.01)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, _, _ in running:
        server.should_exit = True
    stuck = []
    for _, thread, listener in running:
        thread.join(timeout=SERVER_START_SECONDS)
        listener.close()  # uvicorn closes it too; this covers a server that never started
        if thread.is_alive():
            stuck.append(thread.name)
    if stuck:
        pytest.fail(f"servers still running after the test: {', '.join(stuck)}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the whole session (one process; each test gets its own
    context through ``page``). Skipped without Chromium, or failed when CI is set."""
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        message = f"no Chromium at {path}: {CHROMIUM_PACKAGES} (or set {CHROMIUM_ENV})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so the browser tests must run", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=PAGE_TIMEOUT_MS)  # the same patience as a page's actions
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
def page(browser: Browser) -> Iterator[Page]:
    """A new page in a new browser context (its own cookies and storage), whose actions
    and waits give up after 10 s; the context is closed after the test."""
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()
