"""The dashboard over HTTP, on both backends: every page on real jobs that a real worker
ran, bad input, keyset pagination, the token and CSRF rules of the actions, /metrics."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

import tasktrail
from tasktrail.dashboard import create_app
from tests.integration import tasks
from tests.integration.conftest import app, worker_dsn, workers  # noqa: F401  (fixtures)
from tests.integration.helpers import wait_for

TOKEN = "ops:s3cret-token"


@dataclass
class Populated:
    """A website's tree of work (one failed job in it) and another website's job."""

    root: int
    articles: list[int]
    failed: int
    other: int
    worker_name: str


@pytest.fixture
def populated(app: tasktrail.App, workers) -> Populated:  # noqa: F811
    root = tasks.fan_out.enqueue(["article:301", "article:302"], ref=("website", 3))
    failed = tasks.fail_always.enqueue("the API said no", ref=("website", 3))
    other = tasks.square.enqueue(4, ref=("website", 4))
    worker = workers.start(processes=2, burst=True)
    wait_for(
        lambda: all(job.is_final for job in app.jobs(limit=None)) and len(app.jobs()) == 5,
        "the jobs to end",
        diagnose=worker.diagnose,
    )
    articles = app.job(root.id).result
    assert len(articles) == 2
    return Populated(root.id, articles, failed.id, other.id, worker.name)


@pytest.fixture
def client(app: tasktrail.App) -> Iterator[TestClient]:  # noqa: F811
    with TestClient(create_app(app, tokens=TOKEN), follow_redirects=False) as web:
        yield web


def test_every_page_shows_the_jobs_a_worker_ran(
    client: TestClient,
    populated: Populated,
    app: tasktrail.App,  # noqa: F811
) -> None:
    page = client.get("/refs/website/3")
    assert page.status_code == 200
    shown = {int(found) for found in re.findall(r'href="/jobs/(\d+)"', page.text)}
    # the website's jobs and the follow-ups below them (their own refs are articles)
    assert shown == {populated.root, *populated.articles, populated.failed}
    assert "article:301" in page.text
    assert 'class="bar succeeded"' in page.text and 'class="bar failed"' in page.text

    job = client.get(f"/jobs/{populated.failed}")
    assert job.status_code == 200
    assert "RuntimeError" in job.text or "the API said no" in job.text
    assert job.text.count("event-failed") == 3  # three attempts, each in the history
    assert populated.worker_name in job.text

    tree = client.get(f"/jobs/{populated.articles[0]}")
    assert f'href="/jobs/{populated.root}"' in tree.text  # its parent, and the tree

    listing = client.get("/jobs", params={"task": "fail_always", "status": "failed"})
    assert re.findall(r'href="/jobs/(\d+)"', listing.text) == [str(populated.failed)]

    overview = client.get("/")
    assert overview.status_code == 200 and "fan_out" in overview.text
    tasks_page = client.get("/tasks", params={"window": "1d"})
    assert "fail_always" in tasks_page.text and "100.0%" in tasks_page.text
    assert populated.worker_name in client.get("/workers").text
    assert client.get("/schedules").status_code == 200

    fragment = client.get("/refs/website/3", headers={"X-Fragment": "1"})
    assert "<header>" not in fragment.text and "<header>" in page.text


def test_the_overview_charts_the_jobs_ended_and_the_oldest_wait(
    client: TestClient,
    populated: Populated,
    app: tasktrail.App,  # noqa: F811
) -> None:
    tasks.square.enqueue(5, queue="slow-lane")  # no worker takes this queue's jobs
    text = client.get("/").text
    # four succeeded and one failed, all within the hour (and the day): both charts
    for window in ("hour", "day"):
        chart = re.search(rf'<figure class="chart" id="chart-{window}"([^>]*)>(.*?)</figure>',
                          text, re.S)  # fmt: skip
        assert chart is not None
        assert 'data-succeeded="4" data-failed="1" data-cancelled="0"' in chart.group(1)
        assert "failure rate 20.0%" in chart.group(2)
        assert chart.group(2).count('class="succeeded"') >= 1
        assert chart.group(2).count('class="failed"') >= 2  # its part, and the rate's bar
    # /tasks: each task's jobs ended over the window, as a chart in its row
    tasks_page = client.get("/tasks", params={"window": "1d"}).text
    sparks = dict(re.findall(r'<svg class="spark" data-task="([^"]+)" (data-[^>]*)>', tasks_page))
    assert 'data-succeeded="0" data-failed="1"' in sparks["fail_always"]
    assert 'data-succeeded="1" data-failed="0"' in sparks["fan_out"]
    assert 'data-succeeded="1" data-failed="0"' in sparks["square"]  # not the queued one
    # per task, the last hour's ended jobs (from the same read as the hour's chart)
    overview_sparks = dict(
        re.findall(r'<svg class="spark" data-task="([^"]+)" (data-[^>]*)>', text)
    )
    assert 'data-succeeded="0" data-failed="1"' in overview_sparks["fail_always"]
    [row] = re.findall(r"<tr><td><a [^>]*>slow-lane</a>.*?</tr>", text)
    assert re.search(r'class="num oldest">\d+ ms<', row)  # waiting since it was enqueued


def test_the_search_box_takes_a_ref_a_job_id_or_a_task(
    client: TestClient,
    app: tasktrail.App,  # noqa: F811
) -> None:
    assert client.get("/search", params={"q": "website:3"}).headers["location"] == (
        "/refs/website/3"
    )
    assert client.get("/search", params={"q": " 42 "}).headers["location"] == "/jobs/42"
    assert client.get("/search", params={"q": "square"}).headers["location"] == (
        "/jobs?task=square"
    )
    assert client.get("/search", params={"q": ":3"}).status_code == 400


def test_bad_input_gets_a_page_that_names_it(
    client: TestClient,
    app: tasktrail.App,  # noqa: F811
) -> None:
    tasks.square.enqueue(2, ref=("website", 3))
    assert client.get("/refs/website/3").status_code == 200
    missing = client.get("/refs/website/999")
    assert missing.status_code == 404 and "website:999" in missing.text
    assert client.get("/jobs/999999").status_code == 404
    for params, named in (
        ({"status": "bogus"}, "bogus"),
        ({"color": "red"}, "color"),
        ({"before": "x"}, "before"),
        ({"since": "yesterday-ish"}, "since"),
        ({"ref": "nocolon"}, "nocolon"),
    ):
        bad = client.get("/jobs", params=params)
        assert bad.status_code == 400 and named in bad.text, params
    assert client.get("/tasks", params={"window": "forever"}).status_code == 400


def test_the_jobs_list_pages_by_id_without_overlap(
    client: TestClient,
    app: tasktrail.App,  # noqa: F811
) -> None:
    made = sorted((tasks.noop.enqueue().id for _ in range(57)), reverse=True)
    first = client.get("/jobs")
    ids = [int(found) for found in re.findall(r'href="/jobs/(\d+)"', first.text)]
    assert ids == made[:50]
    [next_page] = re.findall(r'class="next" href="([^"]+)"', first.text)
    second = client.get(next_page.replace("&amp;", "&"))
    rest = [int(found) for found in re.findall(r'href="/jobs/(\d+)"', second.text)]
    assert rest == made[50:]
    assert 'class="next"' not in second.text


def test_actions_need_the_token_and_land_in_the_history(
    client: TestClient,
    app: tasktrail.App,  # noqa: F811
) -> None:
    job = tasks.square.enqueue(3)
    app.cancel(job.id, reason="to retry it")

    with TestClient(create_app(app), follow_redirects=False) as read_only:
        assert read_only.post(f"/jobs/{job.id}/retry").status_code == 403
    assert client.post(f"/jobs/{job.id}/retry").status_code == 401  # no credentials
    wrong = client.post(f"/jobs/{job.id}/retry", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    assert app.job(job.id).status == "cancelled"

    # a browser: sign in, then every form carries the CSRF field
    assert client.post("/login", data={"token": "wrong-token"}).status_code == 403
    signed = client.post("/login", data={"token": "s3cret-token"})
    assert signed.status_code == 303 and "tasktrail_session" in signed.headers["set-cookie"]
    assert "httponly" in signed.headers["set-cookie"].lower()
    assert "samesite=strict" in signed.headers["set-cookie"].lower()
    assert client.post(f"/jobs/{job.id}/retry").status_code == 403  # no CSRF field
    assert client.post(f"/jobs/{job.id}/retry", data={"csrf": "forged"}).status_code == 403
    assert app.job(job.id).status == "cancelled"
    page = client.get(f"/jobs/{job.id}")
    [csrf] = re.findall(r'name="csrf" value="([0-9a-f]+)"', page.text)
    done = client.post(f"/jobs/{job.id}/retry", data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job.id}"
    assert app.job(job.id).status == "queued"
    [retried] = [event for event in app.events(job.id) if event.kind == "retried"]
    assert retried.detail["by"] == "dashboard:ops"

    # a script: the bearer token, a JSON answer
    client.cookies.clear()
    cancelled = client.post(
        f"/jobs/{job.id}/cancel", headers={"Authorization": "Bearer s3cret-token"}
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    [cancel] = [event for event in app.events(job.id) if event.kind == "cancelled"][-1:]
    assert cancel.detail["by"] == "dashboard:ops"
    again = client.post(f"/jobs/{job.id}/cancel", headers={"Authorization": "Bearer s3cret-token"})
    assert again.status_code == 409 and "cancel" in again.json()["error"]


def test_a_filtered_set_is_cancelled_with_the_token_and_each_history_says_so(
    client: TestClient,
    app: tasktrail.App,  # noqa: F811
) -> None:
    mine = [tasks.square.enqueue(n, ref=("website", 7)) for n in range(3)]
    other = tasks.square.enqueue(9, ref=("website", 8))
    app.cancel(mine[0].id)  # already ended: left as it is
    bearer = {"Authorization": "Bearer s3cret-token"}
    assert client.post("/jobs/cancel", data={"ref": "website:7"}).status_code == 401
    nothing = client.post("/jobs/cancel", headers=bearer)
    assert nothing.status_code == 400 and "at least one filter" in nothing.json()["error"]
    final = client.post("/jobs/cancel", data={"ref": "website:7", "status": "succeeded"},
                        headers=bearer)  # fmt: skip
    assert final.status_code == 400 and "only active jobs" in final.json()["error"]
    bad = client.post("/jobs/cancel", data={"colour": "red"}, headers=bearer)
    assert bad.status_code == 400 and "colour" in bad.json()["error"]

    # in a browser: the jobs page offers it for the filters shown, with the CSRF field
    client.post("/login", data={"token": "s3cret-token"})
    listing = client.get("/jobs", params={"ref": "website:7"})
    [form] = re.findall(r'<form class="actions cancel-set".*?</form>', listing.text, re.S)
    assert 'name="ref" value="website:7"' in form
    [csrf] = re.findall(r'name="csrf" value="([0-9a-f]+)"', form)
    done = client.post("/jobs/cancel", data={"csrf": csrf, "ref": "website:7", "reason": "moved"})
    assert done.status_code == 200 and "Cancelled 2 jobs" in done.text
    for handle in mine[1:]:
        job = app.job(handle.id)
        [event] = [e for e in app.events(job.id) if e.kind == "cancelled"]
        assert job.status == "cancelled" and event.detail["by"] == "dashboard:ops"
        assert event.detail["reason"] == "moved"
    assert app.job(other.id).status == "queued"
    assert client.get("/jobs").text.count("cancel-set") == 0  # no filter: not offered


def test_metrics_count_the_jobs_by_queue_and_status(
    client: TestClient,
    app: tasktrail.App,  # noqa: F811
) -> None:
    for _ in range(3):
        tasks.noop.enqueue()
    text = client.get("/metrics").text
    assert 'tasktrail_jobs{queue="default",status="queued"} 3.0' in text
    assert "tasktrail_workers_alive 0.0" in text
    assert 'tasktrail_task_jobs_last_hour{status="queued",task="noop"} 3.0' in text
    [waited] = re.findall(r'tasktrail_queue_oldest_wait_seconds\{queue="default"\} (\S+)', text)
    assert 0.0 < float(waited) < 60.0  # since the first enqueue, moments ago


def test_mounted_under_a_prefix_its_links_follow(app: tasktrail.App) -> None:  # noqa: F811
    from starlette.applications import Starlette
    from starlette.routing import Mount

    job = tasks.square.enqueue(2, ref=("website", 5))
    service = Starlette(routes=[Mount("/ops/tasktrail", app=create_app(app, tokens=TOKEN))])
    with TestClient(service, follow_redirects=False) as web:
        page = web.get("/ops/tasktrail/refs/website/5")
        assert page.status_code == 200
        assert f'href="/ops/tasktrail/jobs/{job.id}"' in page.text
        assert 'src="/ops/tasktrail/static/dashboard.js"' in page.text
        assert web.get("/ops/tasktrail/static/dashboard.js").status_code == 200
        found = web.get("/ops/tasktrail/search", params={"q": str(job.id)})
        assert found.headers["location"] == f"/ops/tasktrail/jobs/{job.id}"


def test_the_dashboard_command_serves_the_database(
    app: tasktrail.App,  # noqa: F811
    worker_dsn: str,  # noqa: F811
) -> None:
    import socket
    import subprocess
    import urllib.request

    from tests.integration.conftest import tasktrail_command

    job = tasks.square.enqueue(6, ref=("website", 8))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bad = subprocess.run(
        [tasktrail_command(), "dashboard", "--dsn", worker_dsn, "--token", "ops:short"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and "at least 8 characters" in bad.stderr
    with subprocess.Popen(
        [tasktrail_command(), "dashboard", "--dsn", worker_dsn, "--port", str(port)],
        stderr=subprocess.PIPE, text=True,
    ) as server:  # fmt: skip

        def page() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/refs/website/8") as got:
                    return str(got.read().decode())
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                return None

        try:
            body = wait_for(page, "the dashboard to answer")
            assert f'href="/jobs/{job.id}"' in body
        finally:
            server.terminate()
            server.wait(timeout=10)


def test_the_sample_grafana_dashboard_reads_only_metrics_that_exist(
    client: TestClient,
    app: tasktrail.App,  # noqa: F811
) -> None:
    import json
    from pathlib import Path

    board = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    used = {
        name
        for panel in board["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\btasktrail_[a-z_]+", target["expr"])
    }
    exported = set(re.findall(r"^# TYPE (\S+) ", client.get("/metrics").text, re.M))
    assert len(used) >= 9 and used <= exported, used - exported
