"""The README's main example runs as it says, offline, and its fan-in KPI jobs sum what
their article jobs counted."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_example(script: str, cwd: Path) -> str:
    """What ``python examples/SCRIPT`` prints, run in ``cwd`` on its default database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKTRAIL_")}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / script)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_websites_example_runs_and_sums_each_website_s_counts(tmp_path: Path) -> None:
    out = run_example("websites.py", tmp_path)
    assert "queue drained" in out and "cyberdyne.example: failed after 3 attempts" in out
    assert re.search(r"cyberdyne\.example\s+- articles\s+- comments", out)
    db = sqlite3.connect(tmp_path / "websites-example.db")
    try:
        sums = dict(
            db.execute(
                "SELECT ref_id, sum(CAST(result AS INTEGER)) FROM jobs"
                " WHERE task = 'count_comments' AND status = 'succeeded' GROUP BY ref_id"
            ).fetchall()
        )
        rows = db.execute("SELECT id, comments FROM websites WHERE comments IS NOT NULL").fetchall()
        kpis = db.execute(
            "SELECT status, count(*) FROM jobs WHERE task = 'website_kpis' GROUP BY 1"
        )
        assert dict(kpis.fetchall()) == {"succeeded": 11}  # the broken website has none
    finally:
        db.close()
    assert len(rows) == 11
    for website_id, comments in rows:
        assert comments == sums[str(website_id)]
        assert f"{comments:>5} comments" in out
    # The README's next step: the dashboard on the example's database shows website 5's
    # page (its front page, the article counts below it and the KPI job that summed them).
    from starlette.testclient import TestClient

    import tasktrail
    from tasktrail.dashboard import create_app

    example = tasktrail.App(f"sqlite:///{tmp_path / 'websites-example.db'}")
    try:
        with TestClient(create_app(example)) as web:
            page = web.get("/refs/website/5")
        assert page.status_code == 200
        for task in ("refresh_frontpage", "count_comments", "website_kpis"):
            assert task in page.text
    finally:
        example.close()


def test_the_fastapi_example_enqueues_in_the_request_s_transaction(tmp_path: Path) -> None:
    out = run_example("fastapi_app.py", tmp_path)
    assert "refused: url must start with https:// (no row, no job)" in out
    assert (
        "website 1: {'url': 'https://acme.example', 'title': 'Acme', 'jobs': ['succeeded']}" in out
    )
    assert "website 2: {'url': 'https://globex.example', 'title': 'Globex'" in out
    assert "dashboard /tasktrail/refs/website/1: HTTP 200" in out
    db = sqlite3.connect(tmp_path / "fastapi-example.db")
    try:  # the refused request left nothing: two websites, two jobs
        counts = db.execute("SELECT (SELECT count(*) FROM websites), (SELECT count(*) FROM jobs)")
        assert counts.fetchone() == (2, 2)
    finally:
        db.close()
