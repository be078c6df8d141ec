"""Cancelling a job with its tree: every follow-up below it still queued, reserved or
running is cancelled too (a running one is stopped by its worker), one that has ended
is left as it is, and each history says why."""

from __future__ import annotations

import json
from typing import Any

import pytest

import tasktrail
from tasktrail.clock import utcnow
from tasktrail.job import Outcome, WorkerInfo

from . import tasks
from .helpers import assert_valid_histories
from .test_cli import Cli


@pytest.fixture
def tt(app: tasktrail.App, worker_dsn: str) -> Cli:
    return Cli(worker_dsn)


def _claim(app: tasktrail.App, worker_id: int) -> Any:
    [job] = app.backend.exchange(
        worker_id, outcomes=(), start_ids=(), claim=1, start_claimed=1, queues=(), now=utcnow()
    ).started
    return job


def test_a_job_and_its_active_follow_ups_are_cancelled_together(
    app: tasktrail.App, tt: Cli
) -> None:
    worker = app.backend.register_worker(WorkerInfo("w", "h", 1, 1, 1, (), 30.0), now=utcnow())
    root = tasks.noop.enqueue(ref=("website", 3))
    held = _claim(app, worker)  # the root runs
    done_child = tasks.noop.enqueue(parent=root)
    running_child = tasks.noop.enqueue(parent=root)
    queued_child = tasks.noop.enqueue(parent=root)
    grandchild = tasks.noop.enqueue(parent=queued_child)
    other = tasks.noop.enqueue(ref=("website", 4))
    app.backend.finish(
        worker, [Outcome(held.id, held.attempts, "succeeded", utcnow(), result_json="null")],
        now=utcnow(),
    )  # fmt: skip
    first = _claim(app, worker)
    assert first.id == done_child.id
    app.backend.finish(
        worker, [Outcome(first.id, first.attempts, "succeeded", utcnow(), result_json="null")],
        now=utcnow(),
    )  # fmt: skip
    assert _claim(app, worker).id == running_child.id

    out = tt.ok("cancel", str(root.id), "--tree", "--reason", "site removed")
    lines = out.strip().splitlines()
    assert lines[0] == f"job {root.id} had ended (succeeded): left as it is"
    assert len(lines) == 4  # the root, the running child, the queued child, the grandchild
    assert app.job(done_child.id).status == "succeeded"  # ended: left as it is
    running = app.job(running_child.id)
    assert (running.status, running.cancel_requested_at is not None) == ("running", True)
    assert (app.job(queued_child.id).status, app.job(grandchild.id).status) == (
        "cancelled", "cancelled",
    )  # fmt: skip
    assert app.job(other.id).status == "queued"  # another tree
    [cancelled] = [e for e in app.events(grandchild.id) if e.kind == "cancelled"]
    assert cancelled.detail["reason"] == f"job {root.id} was cancelled with its tree: site removed"

    # the API does the same, and returns the job first
    again = tasks.noop.enqueue()
    below = tasks.noop.enqueue(parent=again)
    changed = app.cancel(again.id, tree=True)
    assert changed.id == again.id and changed.status == "cancelled"
    assert app.job(below.id).status == "cancelled"
    as_json = json.loads(tt.ok("cancel", str(other.id), "--tree", "--json"))
    assert [job["status"] for job in as_json] == ["cancelled"]


def test_cancel_tree_with_an_unknown_id_changes_nothing(app: tasktrail.App, tt: Cli) -> None:
    job = tasks.noop.enqueue()
    result = tt.run("cancel", str(job.id), "987654", "--tree")
    assert result.exit_code == 1 and "no job with id 987654" in result.stderr
    assert app.job(job.id).status == "queued"
    assert_valid_histories(app)
