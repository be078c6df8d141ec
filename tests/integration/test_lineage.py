"""Lineage with a real worker: jobs a task enqueues while it runs (in its child process)
are its follow-ups; a business object's whole tree of work is one query, in the API
and the CLI (`jobs --descendants`, `tree`)."""

from __future__ import annotations

import json

import tasktrail

from . import tasks
from .helpers import assert_valid_histories, wait_for
from .test_worker_control import tt


def test_jobs_enqueued_by_a_running_task_form_its_tree(
    app: tasktrail.App, worker_dsn: str, workers
) -> None:
    worker = workers.start(processes=2)
    root = tasks.fan_out.enqueue(["article:301", "article:302"], 2, ref=("website", 3))
    unrelated = tasks.fan_out.enqueue(["article:401"], 1, ref=("website", 4))
    wait_for(
        lambda: (
            len(app.jobs(limit=None)) == 7 + 3
            and all(job.status == "succeeded" for job in app.jobs(limit=None))
        ),
        "both trees to run",
        diagnose=worker.diagnose,
    )
    articles = tasks.app.job(root.id).result
    assert len(articles) == 2
    leaves = [leaf for article in articles for leaf in app.job(article).result]
    assert len(leaves) == 4

    tree = app.jobs(ref=("website", 3), descendants=True)
    assert sorted(job.id for job in tree) == sorted([root.id, *articles, *leaves])
    by_id = {job.id: job for job in tree}
    assert by_id[root.id].parent_id is None and by_id[root.id].root_id == root.id
    for article in articles:
        assert (by_id[article].parent_id, by_id[article].root_id) == (root.id, root.id)
        assert by_id[article].ref is not None and by_id[article].ref.type == "article"
    for leaf in leaves:
        assert by_id[leaf].parent_id in articles and by_id[leaf].root_id == root.id
    assert unrelated.id not in by_id
    assert [job.id for job in app.tree(leaves[0])] == sorted(by_id)

    listed = json.loads(tt(worker_dsn, "jobs", "--ref", "website:3", "--descendants", "--json"))
    assert [job["id"] for job in listed] == sorted(by_id, reverse=True)
    assert {job["root_id"] for job in listed} == {root.id}

    lines = tt(worker_dsn, "tree", str(leaves[0])).splitlines()
    assert len(lines) == 7
    assert lines[0].startswith(f"{root.id}  succeeded  fan_out  website:3")
    marked = [line for line in lines if line.endswith("<-")]
    assert len(marked) == 1 and f"{leaves[0]}  succeeded  noop" in marked[0]
    assert sum("article:" in line for line in lines) == 2
    assert all(line.startswith(("├─ ", "└─ ", "│  ", "   ")) for line in lines[1:])
    assert_valid_histories(app)


def test_a_parent_can_be_named_from_outside_a_task(app: tasktrail.App) -> None:
    first = tasks.noop.enqueue(ref=("website", 5))
    follow = tasks.noop.enqueue(parent=first)
    by_id = tasks.add.enqueue(1, 2, parent=follow.id)
    job = app.job(by_id.id)
    assert (job.parent_id, job.root_id) == (follow.id, first.id)
    assert [j.id for j in app.jobs(ref="website:5", descendants=True)] == [
        by_id.id, follow.id, first.id,
    ]  # fmt: skip
