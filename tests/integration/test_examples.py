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


def test_the_websites_example_runs_and_sums_each_website_s_counts(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKTRAIL_")}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "websites.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
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
