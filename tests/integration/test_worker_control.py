"""Control of a running worker and of queues, with real workers: the process count
changed through the database (``tasktrail workers scale``, as from another host), by
SIGTTIN / SIGTTOU and by ``--autoscale``; queues paused and resumed fleet-wide
(``tasktrail queues``). Each change shows in ``tasktrail workers`` and the worker's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import tasktrail

from . import tasks
from .conftest import REPO_ROOT, Worker, tasktrail_command
from .helpers import wait_for


def tt(dsn: str, *args: str) -> str:
    """Run the ``tasktrail`` command in a process of its own, as an operator would."""
    env = {**os.environ, "TASKTRAIL_DSN": dsn}
    env.pop("TASKTRAIL_APP", None)
    done = subprocess.run(
        [tasktrail_command(), *args], check=False, cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def registry(dsn: str, name: str) -> dict[str, Any]:
    [row] = [w for w in json.loads(tt(dsn, "workers", "--json")) if w["name"] == name]
    return row


def running_pids(record_file: str) -> set[int]:
    """The child pids of the blocked jobs that have begun and not ended."""
    begun: dict[tuple[int, int], int] = {}
    for line in tasks.read_lines(record_file):
        key = (line["job"], line["attempt"])
        if line["phase"] == "start":
            begun[key] = line["pid"]
        else:
            begun.pop(key, None)
    return set(begun.values())


def wait_children(worker: Worker, count: int) -> None:
    wait_for(
        lambda: len(worker.children()) == count,
        f"worker {worker.name} to run {count} processes",
        diagnose=worker.diagnose,
    )


def test_a_running_worker_is_scaled_through_the_database_and_lets_running_jobs_finish(
    app: tasktrail.App, worker_dsn: str, workers, record_file: str, gate: Path
) -> None:
    worker = workers.start(processes=1)
    worker.wait_registered(app)
    handles = [tasks.block.enqueue(record_file, str(gate)) for _ in range(3)]
    wait_for(lambda: len(running_pids(record_file)) == 1, "one job to begin")

    out = tt(worker_dsn, "workers", "scale", worker.name, "3")
    assert f"asked worker {worker.name} to run 3 processes" in out
    # the two queued jobs begin in the two new processes, without a restart
    wait_for(
        lambda: len(running_pids(record_file)) == 3,
        "the three jobs to run at once",
        diagnose=worker.diagnose,
    )
    assert len(worker.children()) == 3
    row = wait_for(
        lambda: (r := registry(worker_dsn, worker.name))["requested_processes"] is None and r,
        "the request to be applied",
    )
    assert (row["processes"], row["reserve"]) == (3, 192)  # the default reserve follows
    assert row["pid"] == worker.pid  # the same worker: not restarted

    # Down to one while all three run: none is stopped, two processes go once done.
    tt(worker_dsn, "workers", "scale", worker.name, "1")
    wait_for(
        lambda: registry(worker_dsn, worker.name)["processes"] == 1,
        "the worker to record one process",
        diagnose=worker.diagnose,
    )
    assert len(running_pids(record_file)) == 3
    assert len(worker.children()) == 3  # still running their jobs
    gate.touch()
    for handle in handles:
        job = handle.wait(timeout=30)
        assert (job.status, job.attempts) == ("succeeded", 1), worker.diagnose()
    wait_children(worker, 1)
    assert "1 -> 3 processes, reserve 192 (asked through the database)" in worker.log()
    assert "3 -> 1 processes, reserve 64 (asked through the database)" in worker.log()
    assert "exited unexpectedly" not in worker.log()
    after = tasks.add.enqueue(2, 3).wait(timeout=30)
    assert after.result == 5


def test_scaling_a_worker_that_is_not_running_says_so(app, worker_dsn: str) -> None:
    env = {**os.environ, "TASKTRAIL_DSN": worker_dsn}
    done = subprocess.run(
        [tasktrail_command(), "workers", "scale", "nobody", "2"], check=False, cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no running worker is named 'nobody'" in done.stderr


def test_sigttin_adds_a_process_and_sigttou_retires_one(
    app: tasktrail.App, worker_dsn: str, workers
) -> None:
    worker = workers.start(processes=1, reserve=2)
    worker.wait_registered(app)
    # (one at a time: the kernel keeps one of a signal pending, not a count)
    worker.signal(signal.SIGTTIN)
    wait_children(worker, 2)
    worker.signal(signal.SIGTTIN)
    wait_children(worker, 3)
    wait_for(lambda: registry(worker_dsn, worker.name)["processes"] == 3, "the count recorded")
    # a reserve given explicitly scales in proportion: 2 for 1 process, 6 for 3
    assert registry(worker_dsn, worker.name)["reserve"] == 6
    worker.signal(signal.SIGTTOU)
    wait_children(worker, 2)
    wait_for(lambda: registry(worker_dsn, worker.name)["reserve"] == 4, "the reserve to follow")
    handles = [tasks.add.enqueue(i, i) for i in range(6)]
    assert [h.wait(timeout=30).result for h in handles] == [0, 2, 4, 6, 8, 10]
    assert worker.alive()
    assert "1 -> 2 processes, reserve 4 (SIGTTIN)" in worker.log()
    assert "3 -> 2 processes, reserve 4 (SIGTTOU)" in worker.log()


def test_an_autoscaling_worker_grows_while_jobs_wait_and_shrinks_when_idle(
    app: tasktrail.App, worker_dsn: str, workers, record_file: str, gate: Path
) -> None:
    worker = workers.start(processes=None, autoscale="1,3", autoscale_idle=1.0)
    worker.wait_registered(app)
    row = registry(worker_dsn, worker.name)
    assert (row["processes"], row["autoscale_min"], row["autoscale_max"]) == (1, 1, 3)
    handles = [tasks.block.enqueue(record_file, str(gate)) for _ in range(4)]
    wait_for(
        lambda: len(running_pids(record_file)) == 3,
        "the worker to grow to three processes",
        diagnose=worker.diagnose,
    )
    assert len(worker.children()) == 3  # and no more: the range's top
    assert "autoscale: every process busy, jobs waiting" in worker.log()
    gate.touch()
    for handle in handles:
        assert handle.wait(timeout=30).status == "succeeded"
    wait_children(worker, 1)
    assert registry(worker_dsn, worker.name)["processes"] == 1
    assert "autoscale: a process idle for 1s" in worker.log()


def test_a_paused_queue_is_not_claimed_from_until_resumed(
    app: tasktrail.App, worker_dsn: str, workers, record_file: str, gate: Path
) -> None:
    # One worker of every queue, one of the two named ones: neither claims from a
    # paused queue; a job of it running when it is paused finishes.
    every = workers.start(processes=2)
    named = workers.start(processes=2, queues="mail,default")
    for worker in (every, named):
        worker.wait_registered(app)
    running = tasks.block.enqueue(record_file, str(gate), queue="mail")
    wait_for(lambda: running.get().status == "running", "the mail job to run")

    tt(worker_dsn, "queues", "pause", "mail")
    for worker in (every, named):
        wait_for(
            lambda worker=worker: "queue mail paused" in worker.log(),
            f"worker {worker.name} to see the pause",
            diagnose=worker.diagnose,
        )
    # Enqueued first and at a higher priority: each would be claimed before the other
    # job, were the queue not paused.
    waiting = [tasks.add.enqueue(1, i, queue="mail", priority=10) for i in range(3)]
    other = tasks.add.enqueue(1, 1)
    assert other.wait(timeout=30).result == 2
    gate.touch()
    assert running.wait(timeout=30).status == "succeeded"
    assert [h.get().status for h in waiting] == ["queued"] * 3
    assert all([e.kind for e in app.events(h.id)] == ["enqueued"] for h in waiting)
    listed = {q["name"]: q for q in json.loads(tt(worker_dsn, "queues", "list", "--json"))}
    assert listed["mail"]["paused"] is True and listed["mail"]["queued"] == 3
    assert listed["mail"]["changed_by"]  # who asked: user@host
    table = tt(worker_dsn, "queues", "list")
    assert any(line.split()[:3] == ["mail", "paused", "3"] for line in table.splitlines())

    tt(worker_dsn, "queues", "resume", "mail")
    assert [h.wait(timeout=30).result for h in waiting] == [1, 2, 3]
    assert json.loads(tt(worker_dsn, "queues", "list", "--json"))[0]["paused"] is False
