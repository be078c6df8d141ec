"""Flow control with real worker processes: periodic jobs fire once per tick however
many workers there are, per-object locks hold, unique keys hold under concurrent
enqueues, and cancelling a running job kills that job's child and nothing else.

Every wait is on a condition with a deadline; nothing asserts how long anything took.
Whatever the workers did is judged from the database afterwards: the tick ledger and
each job's history (whose timestamps and event order are checked, not just statuses).
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
import signal
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

import tasktrail
from tasktrail.app import whoami
from tasktrail.cli import cli

from ..backends.helpers import run_forked
from . import flow_tasks
from .conftest import REPO_ROOT, WorkerFactory, tasktrail_command
from .helpers import (
    assert_valid_histories,
    kinds,
    max_overlap,
    path,
    process_alive,
    wait_for,
)
from .tasks import read_lines

FLOW_APP = "tests.integration.flow_tasks:app"
PERIODIC_APP = "tests.integration.flow_tasks:periodic_app"
#: A running job's cancel must take effect "within a second or two"; this is the
#: deadline (generous for a loaded machine), not a measured duration.
CANCEL_DEADLINE = 5.0
FINAL_KINDS = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def flow_app(worker_dsn: str) -> Iterator[tasktrail.App]:
    flow_tasks.app.configure(worker_dsn)
    try:
        yield flow_tasks.app
    finally:
        flow_tasks.app.close()


@pytest.fixture
def periodic_app(worker_dsn: str) -> Iterator[tasktrail.App]:
    flow_tasks.periodic_app.configure(worker_dsn)
    try:
        yield flow_tasks.periodic_app
    finally:
        flow_tasks.periodic_app.close()


class Cli:
    """``tasktrail`` run in-process (click's runner) against the test's database."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        asks = "mix_stderr" in inspect.signature(CliRunner).parameters
        self.runner = CliRunner(**({"mix_stderr": False} if asks else {}))

    def run(self, *args: str) -> Any:
        return self.runner.invoke(
            cli, list(args), env={"TASKTRAIL_DSN": self.dsn, "TASKTRAIL_APP": None}
        )

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.exit_code == 0, (args, result.stdout, result.stderr, result.exception)
        return json.loads(result.stdout)

    def fails(self, *args: str) -> str:
        """Run a command that must fail with one clear line on stderr; return that line."""
        result = self.run(*args)
        assert result.exit_code == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        return str(lines[0])


@pytest.fixture
def tt(worker_dsn: str) -> Cli:
    return Cli(worker_dsn)


def stop_all(workers: WorkerFactory) -> None:
    """Stop every worker gracefully and make sure each exits cleanly."""
    for worker in workers.started:
        worker.signal(signal.SIGTERM)
    for worker in workers.started:
        assert worker.wait() == 0, worker.diagnose()


def lines_by_job(path: str) -> dict[int, dict[str, dict[str, Any]]]:
    """The task's own lines, per job, per phase."""
    found: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for line in read_lines(path):
        found[line["job"]][line["phase"]] = line
    return found


def attempt_span(events: list[tasktrail.Event]) -> tuple[datetime, datetime]:
    """``(started, end)`` of a job's only attempt, from its history."""
    [started] = [e.at for e in events if e.kind == "started"]
    [ended] = [e.at for e in events if e.kind in FINAL_KINDS]
    return started, ended


# -- periodic jobs --------------------------------------------------------------------------


def test_periodic_jobs_fire_once_per_tick_across_workers(periodic_app, workers):
    """Three worker clients of two processes each fire the same schedules every second."""
    started = [workers.start(app_spec=PERIODIC_APP, processes=2) for _ in range(3)]
    worker_ids = {w.wait_registered(periodic_app).id for w in started}
    schedules = periodic_app.schedules

    def fired(name: str) -> list[tasktrail.Tick]:
        return [t for t in schedules.ticks(name, limit=None) if t.outcome == "fired"]

    def enough() -> bool:
        return (
            len(fired("every-second")) >= 6
            and len(fired("slow-skip")) >= 2
            and any(t.outcome == "skipped" for t in schedules.ticks("slow-skip", limit=None))
        )

    wait_for(enough, "six ticks, and a skipped slow one", diagnose=workers.diagnose)
    stop_all(workers)  # nothing fires from now on: the ledger below is complete

    # Stored once although three workers stored the code's schedules at start.
    records = {record.name: record for record in schedules.list()}
    assert set(records) == {"every-second", "slow-skip"}
    assert all(record.definition.source == "code" for record in records.values())

    for name, task in (("every-second", flow_tasks.tick.name), ("slow-skip", flow_tasks.slow.name)):
        record = records[name]
        ledger = sorted(schedules.ticks(name, limit=None), key=lambda t: t.due_at)
        due_times = [tick.due_at for tick in ledger]
        # Every due time from the first on is in the ledger exactly once, on the anchor's
        # grid: none was handled twice, none was lost.
        assert due_times == [record.anchor + timedelta(seconds=k + 1) for k in range(len(ledger))]
        assert record.next_due_at == due_times[-1] + timedelta(seconds=1)
        assert {tick.worker_id for tick in ledger} <= worker_ids

        # One job per fired tick, and no other job of the task.
        fired_ticks = [tick for tick in ledger if tick.outcome == "fired"]
        job_ids = [tick.job_id for tick in fired_ticks]
        assert None not in job_ids and len(set(job_ids)) == len(job_ids)
        jobs = {job.id: job for job in periodic_app.jobs(task=task, limit=None)}
        assert set(jobs) == set(job_ids)
        for tick in fired_ticks:
            job = jobs[tick.job_id]  # type: ignore[index]
            assert job.created_at >= tick.due_at  # never fired early
            assert job.args == json.loads(record.definition.args_json)

    # The workers' own accounts agree: each fired tick was logged by one worker only.
    logged = Counter(
        (name, datetime.fromisoformat(due), int(job_id))
        for worker in started
        for name, due, job_id in re.findall(
            r"schedule (\S+), due (\S+): fired job (\d+)", worker.log()
        )
    )
    in_ledger = {
        (tick.schedule, tick.due_at, tick.job_id) for name in records for tick in fired(name)
    }
    assert set(logged) == in_ledger
    assert set(logged.values()) == {1}

    # skip_if_running: a tick while the previous job was active is skipped, with why.
    ledger = sorted(schedules.ticks("slow-skip", limit=None), key=lambda t: t.due_at)
    previous_job = None
    for tick in ledger:
        if tick.outcome == "fired":
            previous_job = tick.job_id
        elif tick.outcome == "skipped":
            assert previous_job is not None
            assert re.fullmatch(
                rf"previous job {previous_job} is still (queued|reserved|running)", tick.reason
            ), tick.reason
    slow_spans = [
        attempt_span(periodic_app.events(job.id))
        for job in periodic_app.jobs(task=flow_tasks.slow.name, status="succeeded", limit=None)
    ]
    assert len(slow_spans) >= 1
    assert max_overlap(slow_spans) == 1  # never two slow jobs at once
    assert_valid_histories(periodic_app)


# -- per-object locks -----------------------------------------------------------------------


def test_a_job_waiting_for_its_lock_holds_no_slot_and_blocks_no_other_object(
    flow_app, workers, record_file, gate
):
    first, second = (workers.start(app_spec=FLOW_APP, processes=3) for _ in range(2))
    for worker in (first, second):
        worker.wait_registered(flow_app)
    task = flow_tasks.kpi_refresh
    holder = task.enqueue(record_file, 1, gate=str(gate))
    waiter = task.enqueue(record_file, 1)
    others = [task.enqueue(record_file, kpi, seconds=0.05) for kpi in (2, 3, 2, 3, 4)]

    # Other KPIs all run to the end while KPI 1's first job is still running ...
    wait_for(
        lambda: all(h.get().status == "succeeded" for h in others),
        "the other KPIs' jobs to succeed",
        diagnose=workers.diagnose,
    )
    assert holder.get().status == "running"
    # ... and KPI 1's second job waits in the queue: never reserved, holding no slot,
    # although six processes were free for it.
    assert waiter.get().status == "queued"
    assert kinds(waiter.events()) == ["enqueued"]

    gate.touch()
    wait_for(lambda: waiter.get().status == "succeeded", "the waiter", diagnose=workers.diagnose)
    holder_span = attempt_span(holder.events())
    waiter_span = attempt_span(waiter.events())
    assert waiter_span[0] >= holder_span[1]  # it started only after the holder ended
    lines = lines_by_job(record_file)
    assert lines[waiter.id]["start"]["at"] >= lines[holder.id]["end"]["at"]
    # KPIs 2 and 3 each ran twice, one after the other; the different KPIs overlapped.
    for kpi in (2, 3):
        spans = [attempt_span(h.events()) for h in others if h.get().args[1] == kpi]
        assert max_overlap(spans) == 1
    assert max_overlap([attempt_span(h.events()) for h in [holder, *others]]) >= 2
    stop_all(workers)
    assert_valid_histories(flow_app)


def test_jobs_sharing_a_lock_never_overlap_under_load(flow_app, workers, record_file):
    # Six KPIs, three workers of two processes holding two jobs each: the workers compete
    # for every KPI's lock as its jobs come free.
    started = [workers.start(app_spec=FLOW_APP, processes=2, reserve=2) for _ in range(3)]
    for worker in started:
        worker.wait_registered(flow_app)
    kpis = (1, 2, 3, 4, 5, 6)
    jobs = flow_app.enqueue_many(
        flow_tasks.kpi_refresh.prepare(record_file, kpis[n % 6], seconds=0.05) for n in range(36)
    )
    wait_for(
        lambda: all(h.get().status == "succeeded" for h in jobs),
        "every KPI job to succeed",
        diagnose=workers.diagnose,
    )
    stop_all(workers)
    assert_valid_histories(flow_app)

    by_kpi: dict[int, list[tasktrail.JobHandle]] = defaultdict(list)
    for handle in jobs:
        by_kpi[handle.get().args[1]].append(handle)
    lines = lines_by_job(record_file)
    all_spans = []
    for kpi in kpis:
        handles = by_kpi[kpi]
        assert {h.get().lock_key for h in handles} == {f"kpi:{kpi}"}
        # From history timestamps: one attempt of a KPI ended before the next started.
        spans = sorted(attempt_span(h.events()) for h in handles)
        assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))
        all_spans.extend(spans)
        # From the tasks' own clocks, too.
        own = [(lines[h.id]["start"]["at"], lines[h.id]["end"]["at"]) for h in handles]
        assert max_overlap(own) == 1
        # The others waited in order: the KPI's jobs started in the order they were made.
        start_order = sorted(handles, key=lambda h: attempt_span(h.events())[0])
        assert [h.id for h in start_order] == sorted(h.id for h in handles)
    # The lock is per object: jobs of different KPIs did run at the same time.
    assert max_overlap(all_spans) >= 2
    assert len({h.get().worker_id for h in jobs}) >= 2


# -- unique jobs ---------------------------------------------------------------------------------


def test_a_unique_key_holds_under_concurrent_enqueues(flow_app, workers, worker_dsn, tmp_path):
    def enqueue_repeatedly(index: int, *, rounds: int = 0, seconds: float = 0.0) -> list:
        import time

        flow_tasks.app.configure(worker_dsn)  # this process's own connection
        answers = []
        deadline = time.monotonic() + seconds
        count = 0
        while count < rounds or time.monotonic() < deadline:
            handle = flow_tasks.website_refresh.enqueue(42, seconds=0.02)
            answers.append([handle.id, handle.created])
            count += 1
        flow_tasks.app.close()
        return answers

    # No worker yet: six processes enqueue website 42 at the same moment.
    (tmp_path / "one").mkdir()
    first_round = run_forked(6, lambda i: enqueue_repeatedly(i, rounds=10), tmp_path / "one")
    answers = [answer for result in first_round for answer in result]
    assert len({job_id for job_id, _ in answers}) == 1
    assert sum(created for _, created in answers) == 1

    # With workers running the jobs: while one is queued or running, enqueues join it;
    # after it ends, the next enqueue makes a new one.
    for _ in range(2):
        workers.start(app_spec=FLOW_APP, processes=2).wait_registered(flow_app)
    (tmp_path / "two").mkdir()
    second_round = run_forked(6, lambda i: enqueue_repeatedly(i, seconds=1.5), tmp_path / "two")
    answers += [answer for result in second_round for answer in result]
    wait_for(lambda: not flow_app.jobs(status=("queued", "reserved", "running"), limit=1),
             "every website job to end", diagnose=workers.diagnose)  # fmt: skip
    stop_all(workers)
    jobs = assert_valid_histories(flow_app)

    assert {job.unique_key for job in jobs} == {"website:42"}
    assert {job.status for job in jobs} == {"succeeded"}
    created = [job_id for job_id, was_created in answers if was_created]
    assert sorted(created) == sorted(job.id for job in jobs)  # each job created once
    assert {job_id for job_id, _ in answers} == {job.id for job in jobs}
    assert len(jobs) >= 3, "the key was never reused: the test proved nothing"
    # From history, in the order it was written: never two active jobs with the key.
    events = sorted((e for job in jobs for e in flow_app.events(job.id)), key=lambda e: e.id)
    active: set[int] = set()
    for event in events:
        if event.kind == "enqueued":
            assert not active, f"job {event.job_id} enqueued while {active} was active"
            active.add(event.job_id)
        elif event.kind in FINAL_KINDS:
            active.discard(event.job_id)


# -- cancelling running jobs -------------------------------------------------------------------


def test_cancel_kills_the_running_job_and_nothing_else(flow_app, workers, record_file, tmp_path):
    worker = workers.start(app_spec=FLOW_APP, processes=2)
    worker_id = worker.wait_registered(flow_app).id
    never = str(tmp_path / "never")
    other_gate = tmp_path / "other-gate"
    victim = flow_tasks.block_retried.enqueue(record_file, never)
    bystander = flow_tasks.block_retried.enqueue(record_file, str(other_gate))

    def both_started() -> dict[int, dict[str, dict[str, Any]]] | None:
        found = lines_by_job(record_file)
        return found if found.keys() >= {victim.id, bystander.id} else None

    lines = wait_for(both_started, "both jobs to start", diagnose=worker.diagnose)
    victim_pid, bystander_pid = (
        lines[victim.id]["start"]["pid"],
        lines[bystander.id]["start"]["pid"],
    )
    assert victim_pid != bystander_pid

    asked = victim.cancel(reason="wrong KPI definition")
    assert (asked.status, asked.max_attempts) == ("running", 1)  # no retry may follow
    assert asked.cancel_requested_at is not None
    wait_for(
        lambda: victim.get().status == "cancelled",
        "the running job to be cancelled",
        timeout=CANCEL_DEADLINE,
        diagnose=worker.diagnose,
    )
    wait_for(lambda: not process_alive(victim_pid), "the victim's process to be gone", timeout=5)

    # Nothing else was touched: the other job runs on in its process, the worker too.
    assert bystander.get().status == "running"
    assert process_alive(bystander_pid)
    assert worker.alive(), worker.diagnose()
    wait_for(lambda: len(worker.children()) == 2, "the killed child to be replaced")
    other_gate.touch()
    assert bystander.wait(timeout=30).status == "succeeded"

    job = victim.get()
    assert (job.attempts, job.error) == (1, "cancelled while running")
    events = victim.events()
    assert path(events) == ["enqueued", "started", "cancel_requested", "cancelled"]
    requested, cancelled = events[-2:]
    assert requested.detail == {"by": whoami(), "reason": "wrong KPI definition"}
    assert requested.worker_id is None  # asked by a person, not by a worker
    assert cancelled.worker_id == worker_id
    assert cancelled.detail["reason"] == "cancel requested"
    assert cancelled.at >= requested.at
    assert "end" not in lines_by_job(record_file)[victim.id]  # it never got to finish
    assert kinds(bystander.events())[-1] == "succeeded"
    stop_all(workers)
    assert_valid_histories(flow_app)


def test_cancel_of_a_running_job_from_the_command_line(
    flow_app, workers, worker_dsn, record_file, tmp_path
):
    worker = workers.start(app_spec=FLOW_APP, processes=1)
    worker.wait_registered(flow_app)
    victim = flow_tasks.block_retried.enqueue(record_file, str(tmp_path / "never"))
    wait_for(lambda: victim.id in lines_by_job(record_file), "the job to start")

    command = [tasktrail_command(), "cancel", str(victim.id), "--reason", "obsolete", "--json"]
    done = subprocess.run(
        [*command, "--dsn", worker_dsn],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [printed] = json.loads(done.stdout)
    # Running when asked; the command reads the job back after the request, by which
    # time its worker (woken by the request) may have stopped it already.
    assert printed["id"] == victim.id
    assert printed["status"] in ("running", "cancelled"), (
        [e.kind for e in victim.events()], worker.diagnose(),
    )  # fmt: skip
    assert printed["cancel_requested_at"] is not None
    wait_for(
        lambda: victim.get().status == "cancelled",
        "the job to be cancelled",
        timeout=CANCEL_DEADLINE,
        diagnose=worker.diagnose,
    )
    requested = victim.events()[-2]
    assert (requested.kind, requested.detail) == (
        "cancel_requested",
        {"by": whoami(), "reason": "obsolete"},
    )
    # The worker goes on: its one process was replaced and serves the next job.
    after = flow_tasks.kpi_refresh.enqueue(record_file, 9)
    assert after.wait(timeout=30).status == "succeeded"

    again = subprocess.run(
        [*command, "--dsn", worker_dsn],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"Error: job {victim.id} is cancelled; only waiting, queued, reserved or running jobs "
        "can be cancelled"
    ]
    stop_all(workers)
    assert_valid_histories(flow_app)


# -- the command line: schedules, retry by filter --------------------------------------------------


def test_schedules_from_the_command_line(flow_app, workers, tt):
    worker = workers.start(app_spec=FLOW_APP, processes=2)
    worker.wait_registered(flow_app)
    add = ("schedules", "add", "--app", FLOW_APP)
    tt.json(*add, "clock", "kpi_tick", "--every", "1s", "--args", "[0]")
    kpi = tt.json(*add, "kpi:7", "kpi_tick", "--every", "1s", "--args", "[7]", "--ref", "kpi:7")
    assert (kpi["name"], kpi["task"], kpi["every_seconds"], kpi["cron"]) == (
        "kpi:7",
        "kpi_tick",
        1.0,
        None,
    )
    assert (kpi["ref_type"], kpi["ref_id"], kpi["paused"], kpi["source"]) == (
        "kpi",
        "7",
        False,
        "runtime",
    )
    assert "bad cron expression '61 * * * *'" in tt.fails(
        *add, "x", "kpi_tick", "--cron", "61 * * * *", "--args", "[1]"
    )
    assert "'clock' already exists" in tt.fails(
        *add, "clock", "kpi_tick", "--every", "1s", "--args", "[1]"
    )
    assert "unknown task 'nope'" in tt.fails(*add, "y", "nope", "--every", "1s")
    assert "missing a required argument" in tt.fails(*add, "z", "kpi_tick", "--every", "1s")
    assert [s["name"] for s in tt.json("schedules", "list")] == ["clock", "kpi:7"]

    def ledger(name: str) -> list[dict[str, Any]]:
        return tt.json("schedules", "ticks", name, "--limit", "0")

    def fired(name: str) -> list[dict[str, Any]]:
        return [t for t in ledger(name) if t["outcome"] == "fired"]

    def clock_passed(moment: datetime) -> bool:
        """The worker fired "clock" for a due time a whole interval after ``moment``: any
        other active schedule due by then would have been handled in that same call."""
        second = timedelta(seconds=1)
        return any(datetime.fromisoformat(t["due_at"]) >= moment + second for t in fired("clock"))

    wait_for(lambda: fired("kpi:7"), "kpi:7 to fire", diagnose=worker.diagnose)
    [paused] = tt.json("schedules", "pause", "kpi:7")
    assert (paused["name"], paused["paused"]) == ("kpi:7", True)
    while_paused = ledger("kpi:7")
    wait_for(lambda: clock_passed(datetime.fromisoformat(paused["updated_at"])), "a clock tick")
    assert ledger("kpi:7") == while_paused  # paused: not one tick, not even a missed one

    resumed_at = datetime.fromisoformat(tt.json("schedules", "resume", "kpi:7")[0]["updated_at"])
    wait_for(
        lambda: any(datetime.fromisoformat(t["due_at"]) > resumed_at for t in fired("kpi:7")),
        "kpi:7 to fire after it was resumed",
    )
    due_times = [datetime.fromisoformat(t["due_at"]) for t in ledger("kpi:7")]
    assert due_times == sorted(due_times, reverse=True)  # newest first
    removed = tt.json("schedules", "remove", "kpi:7")
    assert [s["name"] for s in removed] == ["kpi:7"]
    assert [s["name"] for s in tt.json("schedules", "list")] == ["clock"]
    assert "no schedule named 'kpi:7'" in tt.fails("schedules", "pause", "kpi:7", "clock")
    assert not tt.json("schedules", "list")[0]["paused"]  # one bad name changed nothing
    kept = ledger("kpi:7")  # the ledger of a removed schedule stays
    assert kept and kept[0]["outcome"] == "fired"
    stop_all(workers)

    # Every fired tick is one job with the schedule's arguments and ref.
    jobs = flow_app.jobs(task="kpi_tick", ref=("kpi", "7"), limit=None)
    assert sorted(job.id for job in jobs) == sorted(t["job_id"] for t in fired("kpi:7"))
    assert all(job.args == [7] for job in jobs)
    assert_valid_histories(flow_app)


def test_retry_by_filter_from_the_command_line(flow_app, workers, tt, tmp_path):
    flag = tmp_path / "flag"
    flaky = [flow_tasks.flaky.enqueue(str(flag), ref=("kpi", n)) for n in (1, 2, 3)]
    broken = flow_tasks.broken.enqueue()
    cancelled = flow_tasks.flaky.enqueue(str(flag), delay=3600)
    cancelled.cancel(reason="later")
    worker = workers.start(app_spec=FLOW_APP, processes=2)
    wait_for(
        lambda: all(h.get().status == "failed" for h in [*flaky, broken]),
        "the first attempts to fail",
        diagnose=worker.diagnose,
    )
    flag.touch()

    assert "give job ids or filters" in tt.fails("retry", str(broken.id), "--status", "failed")
    retried = tt.json("retry", "--status", "failed", "--task", "flaky", "--since", "1h")
    assert sorted(j["id"] for j in retried) == sorted(h.id for h in flaky)
    wait_for(
        lambda: all(h.get().status == "succeeded" for h in flaky),
        "the retried jobs to succeed",
        diagnose=worker.diagnose,
    )
    # Only what the filter named was touched.
    assert broken.get().status == "failed"
    assert cancelled.get().status == "cancelled"
    for handle in flaky:
        events = handle.events()
        assert path(events)[-3:] == ["retried", "started", "succeeded"]
        assert next(e for e in events if e.kind == "retried").detail["by"] == whoami()

    nothing = tt.run("retry", "--status", "failed", "--task", "flaky")
    assert (nothing.exit_code, nothing.stdout.strip()) == (0, "no job matches those filters")
    assert tt.json("retry", "--status", "cancelled", "--ref", "kpi:99") == []
    [revived] = tt.json("retry", "--status", "cancelled", "--task", "flaky")
    assert revived["id"] == cancelled.id
    assert cancelled.wait(timeout=30).status == "succeeded"
    stop_all(workers)
    assert_valid_histories(flow_app)
