"""Many jobs, several worker clients: each job runs exactly once, within the bounds."""

from __future__ import annotations

from collections import Counter, defaultdict

from . import tasks
from .helpers import (
    all_events,
    all_final,
    assert_valid_histories,
    max_held,
    max_overlap,
    max_running,
    wait_for,
)

JOB_COUNT = 2000
PROCESSES = 2


def test_two_workers_run_every_job_exactly_once_within_their_bounds(app, workers, record_file):
    # Different reserves, so that a bound mixed up between workers would show.
    reserves = {"w1": 3, "w2": 5}
    first = workers.start(processes=PROCESSES, reserve=reserves["w1"])
    second = workers.start(processes=PROCESSES, reserve=reserves["w2"])
    worker_ids = {w.name: w.wait_registered(app).id for w in (first, second)}

    # One transaction: both workers are woken by the same commit and compete from the start.
    handles = app.enqueue_many(tasks.record.prepare(record_file) for _ in range(JOB_COUNT))
    job_ids = {handle.id for handle in handles}
    wait_for(lambda: all_final(app), f"{JOB_COUNT} jobs to finish", diagnose=workers.diagnose)
    assert first.alive() and second.alive(), workers.diagnose()

    jobs = assert_valid_histories(app)
    assert {job.id for job in jobs} == job_ids
    assert Counter(job.status for job in jobs) == {"succeeded": JOB_COUNT}
    assert all(job.attempts == 1 and job.result == job.id for job in jobs)

    # From outside: the task body ran once per job, never twice, never zero times.
    lines = tasks.read_lines(record_file)
    runs = Counter(line["job"] for line in lines)
    assert set(runs) == job_ids
    assert [job_id for job_id, count in runs.items() if count != 1] == []

    # From history: one start per job (no retries are configured), by a known worker.
    events = all_events(app)
    started = Counter(event.job_id for event in events if event.kind == "started")
    assert started == dict.fromkeys(job_ids, 1)
    by_worker = Counter(event.worker_id for event in events if event.kind == "started")
    assert set(by_worker) == set(worker_ids.values()), "both workers should have run jobs"

    # The reserve bound, from history alone: reserved (+1) until the job leaves the worker.
    held = max_held(events)
    for name, worker_id in worker_ids.items():
        assert held[worker_id] <= reserves[name], (name, held)
    # The bound is reached, so the check above is not vacuous: with 2,000 jobs waiting,
    # the first reservation of each worker fills its reserve.
    assert held == {worker_ids[name]: reserve for name, reserve in reserves.items()}

    # Started jobs are in the worker's processes: at most --reserve at once per worker in
    # history (a process may be handed a few short jobs at once, run one after the
    # other) ...
    running = max_running(events)
    assert set(running) == set(worker_ids.values())
    for name, worker_id in worker_ids.items():
        assert 1 <= running[worker_id] <= reserves[name], running
    # ... and at most --processes really executing, by the tasks' own clocks, per worker
    # and one at a time per child process.
    worker_of = {job.id: job.worker_id for job in jobs}
    per_worker = defaultdict(list)
    per_pid = defaultdict(list)
    for line in lines:
        per_worker[worker_of[line["job"]]].append((line["start"], line["end"]))
        per_pid[line["pid"]].append((line["start"], line["end"]))
    assert all(max_overlap(spans) <= PROCESSES for spans in per_worker.values())
    assert all(max_overlap(spans) == 1 for spans in per_pid.values())
    # History names the child process that ran each job, as the job itself saw it.
    ran_in = {line["job"]: line["pid"] for line in lines}
    for kind in ("started", "succeeded"):
        named = {event.job_id: event.child_pid for event in events if event.kind == kind}
        assert named == ran_in, kind
    # Both workers used every child: 2 x 2 processes, none replaced.
    assert len(per_pid) == 2 * PROCESSES
