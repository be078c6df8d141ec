r"""The micro-task example: fetch the company logo of each user in a CSV, in parallel.

    python examples/logos.py [DIRECTORY]

Offline: it starts a small local web server that plays 200 companies' websites (a few
are broken, a few slow), writes `users.csv` (username, website), then runs

    for result in app.map(fetch_logo, rows, processes=8, timeout=2, state=...): ...

which fetches each front page, finds its logo, downloads it into `logos/`, and records
every row's outcome in a SQLite state file, `users.csv.state.db`. All three are written
in DIRECTORY (default: `tasktrail-logos` in the system's temporary directory), nowhere
else. Run it again: finished rows are not redone (interrupt it with Ctrl-C in the middle
to see it carry on). The same from the shell, in DIRECTORY, with the failed rows written
out, then run again once their cause is fixed (logos go to `./logos`):

    export PYTHONPATH=/path/to/tasktrail  # where examples.logos imports from
    tasktrail map examples.logos:fetch_logo users.csv -o logos.csv --failed-out failed.csv
    tasktrail map examples.logos:fetch_logo users.csv -o logos.csv --failed-out failed.csv \
        --retry-failed

(from the shell there is no local server: point FAKE_DOMAIN's rows at real websites).
"""

from __future__ import annotations

import csv
import http.server
import re
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import tasktrail

COMPANIES = 200
DEFAULT_DIRECTORY = Path(tempfile.gettempdir()) / "tasktrail-logos"
#: Where the logos go, and the companies' websites, played by a local server: main()
#: sets both before the map starts (the worker's processes are forked, so they inherit
#: them).
LOGOS = Path("logos")
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
    return {"file": str(target), "bytes": len(image)}


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


def write_users(path: Path) -> list[dict[str, str]]:
    """Write the input CSV, one user per company, and return its rows as read back."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["username", "website"])
        writer.writerows([f"user{n}", f"{FAKE_DOMAIN}/site/{n}/"] for n in range(COMPANIES))
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def main(directory: Path) -> int:
    global LOCAL_SERVER, LOGOS
    directory.mkdir(parents=True, exist_ok=True)
    LOGOS = directory / "logos"
    server = QuietServer(("127.0.0.1", 0), FakeWebsites)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    LOCAL_SERVER = f"http://127.0.0.1:{server.server_address[1]}"
    rows = write_users(directory / "users.csv")

    # The state file keeps every row's outcome: run this again and finished rows are
    # not redone. (The app's own database is not used: a map needs no server.)
    app = tasktrail.App()
    state = directory / "users.csv.state.db"
    started = time.monotonic()
    failed = []
    for result in app.map(fetch_logo, rows, processes=8, timeout=2, state=state):
        if not result.ok:
            failed.append(result)
    elapsed = time.monotonic() - started
    print(f"{len(rows)} websites in {elapsed:.1f}s: {len(rows) - len(failed)} logos in {LOGOS},")
    print(f"{len(failed)} failed, each with its reason:")
    for result in failed[:6]:
        print(f"  {result.item['username']}: {result.error}")
    print(f"state: {state} (run again: nothing finished is redone)")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIRECTORY))
