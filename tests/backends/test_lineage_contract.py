"""Lineage in the Backend contract: a follow-up names its parent and the root of its
tree; a business object's jobs come with every follow-up below them; a tree is read
from its root. Run against every backend (the ``dsn`` fixture); time is a parameter."""

from __future__ import annotations

import pytest

from tasktrail.backends import Backend, JobFilter
from tasktrail.backends.postgres.backend import COPY_FROM
from tasktrail.errors import InvalidArguments

from .helpers import T0, at, enqueue, must_get, new_job, query


def ids(jobs: list) -> list[int]:
    return [job.id for job in jobs]


def test_a_follow_up_names_its_parent_and_the_root_of_its_tree(backend: Backend) -> None:
    [root] = enqueue(backend, [new_job(ref=("website", "3"))], now=T0)
    [child] = enqueue(backend, [new_job(ref=("article", "301"))._replace(parent_id=root)], now=T0)
    [grandchild] = enqueue(backend, [new_job()._replace(parent_id=child)], now=T0)
    assert (must_get(backend, root).parent_id, must_get(backend, root).root_id) == (None, root)
    assert (must_get(backend, child).parent_id, must_get(backend, child).root_id) == (root, root)
    job = must_get(backend, grandchild)
    assert (job.parent_id, job.root_id) == (child, root)
    assert job.to_dict()["root_id"] == root and job.to_dict()["parent_id"] == child


def test_every_way_of_enqueueing_records_the_lineage(backend: Backend) -> None:
    [root] = enqueue(backend, [new_job()], now=T0)
    [mid] = enqueue(backend, [new_job()._replace(parent_id=root)], now=T0)
    several = enqueue(
        backend, [new_job("tests.task", i)._replace(parent_id=mid) for i in range(3)], now=T0
    )
    many = enqueue(
        backend,
        [new_job("tests.task", i)._replace(parent_id=mid) for i in range(COPY_FROM)],
        now=T0,
    )  # on PostgreSQL, by COPY
    unique = enqueue(
        backend, [new_job()._replace(parent_id=root, unique_key="k")], now=T0
    )  # the path of unique jobs
    for job_id in several + many:
        job = must_get(backend, job_id)
        assert (job.parent_id, job.root_id) == (mid, root)
    assert (must_get(backend, unique[0]).parent_id, must_get(backend, unique[0]).root_id) == (
        root, root,
    )  # fmt: skip


def test_a_parent_that_does_not_exist_is_refused_and_nothing_is_stored(backend: Backend) -> None:
    [root] = enqueue(backend, [new_job()], now=T0)
    with pytest.raises(InvalidArguments, match="parent job 987654 does not exist"):
        backend.enqueue(
            [new_job()._replace(parent_id=root), new_job()._replace(parent_id=987654)], now=T0
        )
    assert ids(backend.list_jobs(JobFilter())) == [root]


def test_a_business_object_s_jobs_come_with_every_follow_up_below_them(
    backend: Backend, sql_dsn: str
) -> None:
    [site] = enqueue(backend, [new_job("front", ref=("website", "3"))], now=T0)
    [other_site] = enqueue(backend, [new_job("front", ref=("website", "4"))], now=T0)
    articles = enqueue(
        backend,
        [
            new_job("count", ref=("article", str(300 + i)))._replace(parent_id=site)
            for i in range(3)
        ],
        now=at(1),
    )
    [elsewhere] = enqueue(backend, [new_job("count")._replace(parent_id=other_site)], now=at(1))
    [deep] = enqueue(backend, [new_job("deep")._replace(parent_id=articles[1])], now=at(2))
    # a second job of the same website, mid-tree of nothing: its own (empty) tree
    [again] = enqueue(backend, [new_job("front", ref=("website", "3"))], now=at(3))
    backend.cancel(articles[0], now=at(4), by="test")

    tree = JobFilter(ref_type="website", ref_id="3", descendants=True)
    assert ids(backend.list_jobs(tree)) == sorted([site, *articles, deep, again], reverse=True)
    assert elsewhere not in ids(backend.list_jobs(tree))
    # without descendants: only the website's own jobs
    assert ids(backend.list_jobs(JobFilter(ref_type="website", ref_id="3"))) == [again, site]
    # the other filters apply to the whole set
    cancelled = JobFilter(ref_type="website", ref_id="3", descendants=True, statuses=("cancelled",))
    assert ids(backend.list_jobs(cancelled)) == [articles[0]]
    counted = JobFilter(ref_type="website", ref_id="3", descendants=True, task="count")
    assert ids(backend.list_jobs(counted)) == sorted(articles, reverse=True)
    # from a job in the middle: it and what is below it
    middle = JobFilter(ids=(articles[1],), descendants=True)
    assert ids(backend.list_jobs(middle)) == [deep, articles[1]]
    assert ids(backend.list_jobs(JobFilter(ref_type="website", descendants=True, limit=2))) == [
        again, deep,
    ]  # fmt: skip

    # a tree read from its root
    assert sorted(ids(backend.list_jobs(JobFilter(tree=site)))) == [site, *articles, deep]
    assert ids(backend.list_jobs(JobFilter(tree=again))) == [again]

    # and in SQL: the history view names parent and root
    found = query(sql_dsn, "SELECT DISTINCT job_id, parent_id, root_id FROM job_history")
    lineage = {row[0]: row[1:] for row in found}
    assert (lineage[site], lineage[deep]) == ((None, site), (articles[1], site))
