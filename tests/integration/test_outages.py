"""Database outages seen by real workers: the database goes away and comes back.

The workers reach PostgreSQL through a proxy the test cuts (the shared server is never
stopped). Found by the chaos harness (tests/chaos): after an outage longer than the
lease, the first worker back declared every other worker lost, though they were alive
and only waiting out their growing backoff, and their finished jobs ran again; and a
worker started just after the outage did the same at once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

import tasktrail
from tasktrail.clock import utcnow

from . import tasks
from .conftest import WorkerFactory
from .helpers import all_final, assert_valid_histories, kinds, wait_for
from .proxy import Proxy

pytestmark = pytest.mark.postgres

LEASE = 2.0


@pytest.fixture
def proxied_workers(proxy: Proxy, tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(proxy.dsn, tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()


def _started(record_file: str) -> set[int]:
    return {line["job"] for line in tasks.read_lines(record_file) if line["phase"] == "start"}


def test_an_outage_longer_than_the_lease_declares_no_live_worker_lost(
    pg_app, pg_dsn, record_file, gate, tmp_path
):
    handles = [tasks.block_retried.enqueue(record_file, str(gate)) for _ in range(2)]
    proxies = [Proxy(pg_dsn), Proxy(pg_dsn)]
    for relay in proxies:
        relay.start()  # before reading relay.dsn: the port is chosen here
    factories = [WorkerFactory(p.dsn, tmp_path, prefix=f"via{i}-") for i, p in enumerate(proxies)]
    try:
        started = [f.start(processes=1, reserve=1, lease=LEASE) for f in factories]
        first, second = (worker.wait_registered(pg_app).id for worker in started)
        wait_for(
            lambda: _started(record_file) == {h.id for h in handles},
            "each worker to run one job",
        )

        for relay in proxies:
            relay.cut()
        # The outage: three leases long, so every lease in the database expires.
        time.sleep(3 * LEASE)
        restored_at = utcnow()
        proxies[0].restore()
        # The first worker is back; the second comes back a moment later.
        wait_for(lambda: _heartbeat_since(pg_app, first, restored_at), "the first to heartbeat")
        proxies[1].restore()
        gate.touch()
        wait_for(lambda: all_final(pg_app), "both jobs to finish")

        registry = {w.id: w.status for w in pg_app.workers(include_stopped=True, limit=None)}
        diagnosis = "\n".join(f.diagnose() for f in factories)
        assert (registry[first], registry[second]) == ("running", "running"), diagnosis
    finally:
        for factory in factories:
            factory.kill_all()
        for relay in proxies:
            relay.close()
    for handle in handles:
        job = handle.get()
        assert (job.status, job.attempts) == ("succeeded", 1), kinds(handle.events())
        assert "lost" not in kinds(handle.events())
    assert_valid_histories(pg_app)


def _heartbeat_since(app: tasktrail.App, worker_id: int, moment: datetime) -> bool:
    [record] = [w for w in app.workers(limit=None) if w.id == worker_id]
    return record.heartbeat_at > moment


def test_a_new_worker_acts_on_expired_leases_only_after_a_lease_of_its_own(
    pg_app, pg_dsn, proxy, proxied_workers, record_file, gate, tmp_path
):
    handle = tasks.block_retried.enqueue(record_file, str(gate))
    cut_off = proxied_workers.start(processes=1, lease=LEASE)
    cut_off_id = cut_off.wait_registered(pg_app).id
    wait_for(lambda: _started(record_file) == {handle.id}, "the job to start")

    proxy.cut()

    def lease_expired() -> bool:
        [record] = [w for w in pg_app.workers(limit=None) if w.id == cut_off_id]
        return record.expires_at < utcnow()

    wait_for(lease_expired, "the cut-off worker's lease to expire")
    # A worker starts now, as after a database outage: it cannot tell the others were
    # cut off as long as it was, so it gives them a lease to come back.
    newcomers = WorkerFactory(pg_dsn, tmp_path, prefix="direct")
    try:
        newcomers.start(processes=1, lease=LEASE).wait_registered(pg_app)
        proxy.restore()
        gate.touch()
        wait_for(lambda: all_final(pg_app), "the job to finish", diagnose=newcomers.diagnose)
    finally:
        newcomers.kill_all()

    registry = {w.id: w.status for w in pg_app.workers(include_stopped=True, limit=None)}
    assert registry[cut_off_id] == "running", proxied_workers.diagnose()
    job = handle.get()
    assert (job.status, job.attempts, job.worker_id) == ("succeeded", 1, cut_off_id)
    assert "lost" not in kinds(handle.events())


def test_a_worker_started_while_the_database_is_down_waits_for_it(
    pg_app, proxy, proxied_workers, record_file, gate
):
    handle = tasks.block_retried.enqueue(record_file, str(gate))  # the schema exists
    proxy.cut()
    worker = proxied_workers.start(processes=1, lease=LEASE)
    wait_for(lambda: "cannot start yet" in worker.log(), "the worker to report the outage")
    assert worker.alive(), worker.diagnose()
    assert not pg_app.workers(limit=None)

    proxy.restore()
    worker.wait_registered(pg_app)
    gate.touch()
    wait_for(lambda: all_final(pg_app), "the job to finish", diagnose=worker.diagnose)
    assert handle.get().status == "succeeded"


def test_a_worker_waiting_for_the_database_stops_cleanly_on_sigterm(pg_app, proxy, proxied_workers):
    pg_app.backend  # noqa: B018 - the schema exists
    proxy.cut()
    worker = proxied_workers.start(processes=1, lease=LEASE)
    wait_for(lambda: "cannot start yet" in worker.log(), "the worker to report the outage")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.diagnose()
    assert worker.children() == []
    assert not pg_app.workers(include_stopped=True, limit=None)
