"""``tasktrail worker --metrics-port``: a real worker's own metrics, scraped over HTTP.

The figures come from the supervisor's state (not the database), so each is checked
against what the test made happen: a job held open by a gate runs, the quick jobs sent
to its child behind it wait there (buffered), the others finish. Only the supervisor
listens; its children, forked after the server was bound, do not; and a worker without
the option neither listens nor imports prometheus_client.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

import tasktrail

from . import tasks
from .conftest import REPO_ROOT, Worker, WorkerFactory, tasktrail_command
from .helpers import status_counts, wait_for

WARM_UP = 30  # quick jobs first: the worker learns that `pause` is quick
FOLLOWERS = 10  # quick jobs claimed with the gated one
SUCCEEDED = "jobs_finished_total{outcome=succeeded}"


def metrics_url(worker: Worker) -> str:
    """The address the worker logged (it was given port 0: a free one)."""
    found = wait_for(
        lambda: re.search(r"metrics at (http://\S+/metrics)", worker.log()),
        f"worker {worker.name} to log its metrics address",
        diagnose=worker.diagnose,
    )
    return found.group(1)


def scrape(url: str, worker: Worker) -> dict[str, float]:
    """The worker's samples by name less ``tasktrail_worker_``, with the labels other than
    worker and host: ``jobs_finished_total{outcome=succeeded}``."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("worker") == worker.name
            assert labels.pop("host") == socket.gethostname()
            assert sample.name.startswith("tasktrail_worker_"), sample.name
            name = sample.name.removeprefix("tasktrail_worker_")
            extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            samples[f"{name}{{{extra}}}" if extra else name] = sample.value
    return samples


def scrape_until(
    url: str, worker: Worker, condition: Callable[[dict[str, float]], bool], what: str
) -> dict[str, float]:
    """Scrape until ``condition`` holds for the samples; return them."""

    def check() -> dict[str, float] | None:
        samples = scrape(url, worker)
        return samples if condition(samples) else None

    return wait_for(check, what, diagnose=worker.diagnose)


def listening_ports(pid: int) -> set[int]:
    """The TCP ports that ``pid`` holds a listening socket of."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as file:
            for line in file.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    listening[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    ports = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if (inode := target.removeprefix("socket:[").rstrip("]")) in listening:
            ports.add(listening[inode])
    return ports


def test_a_worker_serves_its_own_metrics(
    app: tasktrail.App, workers: WorkerFactory, record_file: str, gate: Path
) -> None:
    worker = workers.start(processes=2, metrics_port=0)
    url = metrics_url(worker)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    worker.wait_registered(app)
    first = scrape(url, worker)
    assert first["jobs_running"] == first["jobs_buffered"] == 0
    assert first["child_processes"] == 2
    assert first["reserve_limit"] == 128  # 64 per process by default

    # Only the supervisor listens: its children, forked after it bound the port, do not.
    children = worker.children()
    assert len(children) == 2
    assert listening_ports(worker.pid) == {port}
    assert all(listening_ports(pid) == set() for pid in children)

    app.enqueue_many(tasks.pause.prepare(record_file, 0.0) for _ in range(WARM_UP))
    scrape_until(url, worker, lambda m: m[SUCCEEDED] == WARM_UP, "the warm-up jobs to end")
    # One transaction, the gated job first: one claim takes it with quick ones for both
    # children, and those sent behind it wait in its child (the worker thought it quick).
    app.enqueue_many(
        [tasks.pause.prepare(record_file, 0.0, str(gate))]
        + [tasks.pause.prepare(record_file, 0.0) for _ in range(FOLLOWERS)]
    )
    held = scrape_until(
        url,
        worker,
        lambda m: (
            m["jobs_running"] == 1
            and m["jobs_buffered"] >= 1
            and m["outcomes_pending"] == 0
            and m[SUCCEEDED] == WARM_UP + FOLLOWERS - m["jobs_buffered"]
        ),
        "the gated job to run with jobs buffered behind it, the others done",
    )
    # The database agrees: every job the worker holds is started there for its child.
    buffered = int(held["jobs_buffered"])
    assert status_counts(app) == {
        "running": 1 + buffered,
        "succeeded": WARM_UP + FOLLOWERS - buffered,
    }

    gate.touch()
    tasks.fail_always.enqueue()  # three attempts, each failed
    total = WARM_UP + 1 + FOLLOWERS
    done = scrape_until(
        url,
        worker,
        lambda m: (
            m["jobs_finished_total{outcome=failed}"] == 3
            and m[SUCCEEDED] == total
            and m["outcomes_pending"] == 0
        ),
        "every job to end",
    )
    assert done["jobs_running"] == done["jobs_buffered"] == 0
    given_back = done["jobs_finished_total{outcome=interrupted}"]
    assert done["jobs_started_total"] == total + 3
    assert done["jobs_claimed_total"] == total + 3 + given_back
    for kind in ("timeout", "cancelled", "deferred"):
        assert done[f"jobs_finished_total{{outcome={kind}}}"] == 0
    exchanges = done["exchanges_total"]
    assert exchanges >= first["exchanges_total"] + 3
    assert done["exchange_duration_seconds_count"] == exchanges
    assert done["exchange_duration_seconds_bucket{le=+Inf}"] == exchanges
    assert 0 < done["exchange_duration_seconds_sum"] < exchanges
    assert done["database_errors_total"] == 0

    # Anything but GET /metrics is refused, and the worker carries on.
    for method, path, status in (("GET", "/", 404), ("POST", "/metrics", 405)):
        request = urllib.request.Request(url.replace("/metrics", path), method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()
        assert refused.value.code == status
    assert scrape(url, worker)["child_processes"] == 2


def test_a_worker_without_the_option_listens_nowhere(
    app: tasktrail.App, workers: WorkerFactory
) -> None:
    worker = workers.start(processes=2)
    worker.wait_registered(app)
    wait_for(lambda: len(worker.children()) == 2, "the children", diagnose=worker.diagnose)
    for pid in [worker.pid, *worker.children()]:
        assert listening_ports(pid) == set()
    assert "metrics" not in worker.log()


# A worker run through the API, in burst mode (it stops at once: nothing is queued):
# which of the metrics' modules it imported.
IMPORTED = """
import json, sys
from tests.integration import tasks
tasks.app.configure(sys.argv[1])
tasks.app.run_worker(processes=1, burst=True, metrics_port=json.loads(sys.argv[2]))
print(json.dumps([m for m in ("prometheus_client", "tasktrail.worker.metrics") if m in sys.modules]))
"""


@pytest.mark.parametrize(
    ("metrics_port", "imported"),
    [(None, []), (0, ["prometheus_client", "tasktrail.worker.metrics"])],
)
def test_prometheus_client_is_imported_only_with_the_option(
    worker_dsn: str, metrics_port: int | None, imported: list[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED, worker_dsn, json.dumps(metrics_port)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == imported


def run_worker(
    dsn: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    return subprocess.run(
        [tasktrail_command(), "worker", "--dsn", dsn, "--app", "tests.integration.tasks:app",
         "--burst", *options],
        cwd=REPO_ROOT, env={**clean, **(env or {})}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def test_without_prometheus_client_the_option_stops_the_worker_at_start(
    app: tasktrail.App, worker_dsn: str, tmp_path: Path
) -> None:
    blocked = tmp_path / "blocked" / "prometheus_client"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed (the test hides it)')\n")
    done = run_worker(worker_dsn, "--metrics-port", "0", env={"PYTHONPATH": str(blocked.parent)})
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: --metrics-port needs prometheus_client: pip install 'tasktrail[dashboard]' "
        "(not installed (the test hides it))"
    ]
    assert app.workers(include_stopped=True, limit=None) == []  # it never registered


def test_a_port_in_use_stops_the_worker_at_start(app: tasktrail.App, worker_dsn: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run_worker(worker_dsn, "--metrics-port", str(port))
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: cannot serve metrics on 127.0.0.1:{port} "), line
    assert "Address already in use" in line
    assert app.workers(include_stopped=True, limit=None) == []
