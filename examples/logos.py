"""The micro-task example: fetch the company logo of each user in a CSV, in parallel.

    python examples/logos.py

Offline: it starts a small local web server that plays 200 companies' websites (a few
are broken, a few slow), writes `users.csv` (username, website), then runs

    for result in app.map(fetch_logo, rows, processes=8, timeout=2, state=...): ...

which fetches each front page, finds its logo, downloads it into `logos/`, and records
every row's outcome in a SQLite state file. Run it again: finished rows are not redone
(interrupt it with Ctrl-C in the middle to see it carry on). The same from the shell:

    tasktrail map examples.logos:fetch_logo users.csv -o logos.csv --processes 8

(from the shell there is no local server: point FAKE_DOMAIN's rows at real websites).
"""

from __future__ import annotations

import csv
import http.server
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import tasktrail

COMPANIES = 200
HERE = Path.cwd()
LOGOS = HERE / "logos"
#: The companies' websites are played by a local server; its address is set by main()
#: before the map starts (the worker's processes are forked, so they inherit it).
FAKE_DOMAIN = "http://companies.example"
LOCAL_SERVER = ""


def fetch_logo(username: str, website: str) -> dict[str, Any]:
    """Fetch ``website``'s front page, find its logo, save it as logos/<username>.png."""
    website = website.replace(FAKE_DOMAIN, LOCAL_SERVER or FAKE_DOMAIN)
    with urllib.request.urlopen(website, timeout=5) as response:
        page = response.read().decode()
    match = re.search(r'<img class="logo" src="([^"]+)"', page)
    if match is None:
        raise LookupError(f"no logo on {website}")
    with urllib.request.urlopen(website.rstrip("/") + match.group(1), timeout=5) as response:
        image = response.read()
    LOGOS.mkdir(exist_ok=True)
    target = LOGOS / f"{username}.png"
    target.write_bytes(image)
    return {"file": str(target.relative_to(HERE)), "bytes": len(image)}


class FakeWebsites(http.server.BaseHTTPRequestHandler):
    """/site/<n>/ is company n's front page; /site/<n>/logo.png its logo."""

    def do_GET(self) -> None:
        match = re.fullmatch(r"/site/(\d+)/(logo\.png)?", self.path)
        if match is None:
            self.send_error(404)
            return
        n = int(match.group(1))
        if n % 37 == 5:  # a broken website
            self.send_error(500, "internal error")
            return
        if n % 53 == 7:  # a slow one: the item's timeout stops it
            time.sleep(3)
        if match.group(2):
            body = b"\x89PNG\r\n\x1a\n" + bytes([n % 256]) * (100 + n)
            content_type = "image/png"
        elif n % 41 == 3:  # a page without a logo
            body = b"<html><body>under construction</body></html>"
            content_type = "text/html"
        else:
            body = f'<html><body><img class="logo" src="/logo.png"> Company {n}</body></html>'
            body, content_type = body.encode(), "text/html"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and went away: nothing to report


def main() -> int:
    global LOCAL_SERVER
    server = QuietServer(("127.0.0.1", 0), FakeWebsites)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    LOCAL_SERVER = f"http://127.0.0.1:{server.server_address[1]}"
    with open("users.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["username", "website"])
        writer.writerows([f"user{n}", f"{FAKE_DOMAIN}/site/{n}/"] for n in range(COMPANIES))
    with open("users.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))

    # The state file keeps every row's outcome: run this again and finished rows are
    # not redone. (The app's own database is not used: a map needs no server.)
    app = tasktrail.App()
    state = HERE / "users.csv.state.db"
    started = time.monotonic()
    failed = []
    for result in app.map(fetch_logo, rows, processes=8, timeout=2, state=state):
        if not result.ok:
            failed.append(result)
    elapsed = time.monotonic() - started
    print(f"{len(rows)} websites in {elapsed:.1f}s: {len(rows) - len(failed)} logos in logos/,")
    print(f"{len(failed)} failed, each with its reason:")
    for result in failed[:6]:
        print(f"  {result.item['username']}: {result.error}")
    print(f"state: {state} (run again: nothing finished is redone)")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
