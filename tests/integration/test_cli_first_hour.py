"""What a new user hit in the first hour, from the command line (issue 16 §3): payloads
from a file or standard input, a reserve below the process count, task names without
their module, and read commands that must not create a database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tasktrail
from tasktrail.cli import cli

from . import tasks
from .conftest import APP_SPEC
from .test_cli import Cli


@pytest.fixture
def tt(app: tasktrail.App, worker_dsn: str) -> Cli:
    return Cli(worker_dsn)


def enqueue(tt: Cli, *args: str, stdin: str | None = None) -> Any:
    return tt.runner.invoke(
        cli,
        ["enqueue", "--app", APP_SPEC, *args, "--json"],
        env={"TASKTRAIL_DSN": tt.dsn, "TASKTRAIL_APP": None},
        input=stdin,
    )


def test_arguments_come_from_a_file_or_from_standard_input(
    app: tasktrail.App, tt: Cli, tmp_path: Path
) -> None:
    big = [f"https://example.com/{n}?q='x'&y=\"z\"" for n in range(5000)]
    payload = tmp_path / "args.json"
    payload.write_text(json.dumps([big]), encoding="utf-8")
    done = enqueue(tt, "echo", "--args", f"@{payload}")
    assert done.exit_code == 0, done.stderr
    assert app.job(json.loads(done.stdout)["id"]).args == [big]

    done = enqueue(tt, "echo", "--args", "[1]", "--kwargs", "-", stdin='{"name": "it\'s"}')
    assert done.exit_code == 0, done.stderr
    job = app.job(json.loads(done.stdout)["id"])
    assert (job.args, job.kwargs) == ([1], {"name": "it's"})


def test_a_payload_file_that_cannot_be_read_is_one_clear_line(
    app: tasktrail.App, tt: Cli, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.json"
    done = enqueue(tt, "echo", "--args", f"@{missing}")
    assert done.exit_code == 1
    assert f"cannot read --args (from {missing}): No such file or directory" in done.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2", encoding="utf-8")
    done = enqueue(tt, "echo", "--args", f"@{broken}")
    assert done.exit_code == 1
    assert f"--args (from {broken}) is not valid JSON" in done.stderr
    done = enqueue(tt, "echo", "--kwargs", "-", stdin="[]")
    assert done.exit_code == 1
    assert "--kwargs (from standard input) must be a JSON object" in done.stderr
    assert app.jobs() == []  # nothing enqueued


def test_a_reserve_below_the_process_count_is_warned_about(
    app: tasktrail.App, workers, worker_dsn: str
) -> None:
    worker = workers.start(processes=3, reserve=1, burst=True)
    assert worker.wait() == 0
    assert (
        "Warning: --reserve 1 is below --processes 3: at most 1 jobs run at once, "
        "so 2 processes stay idle"
    ) in worker.log()
    quiet = workers.start(processes=2, reserve=2, burst=True)
    assert quiet.wait() == 0
    assert "Warning" not in quiet.log()


def test_a_bare_function_name_finds_its_task_or_names_the_candidates() -> None:
    from . import bare_tasks

    full = "tests.integration.bare_tasks.refresh_frontpage"
    assert bare_tasks.refresh_frontpage.name == full
    assert bare_tasks.app.resolve_task_name("refresh_frontpage") == full
    assert bare_tasks.app.get_task("refresh_frontpage") is bare_tasks.refresh_frontpage
    assert bare_tasks.app.resolve_task_name("gone_task") == "gone_task"  # history may hold it

    two = tasktrail.App()
    for name in ("sites.refresh_frontpage", "blogs.refresh_frontpage"):
        two.task(name=name)(bare_tasks.refresh_frontpage.func)
    with pytest.raises(
        tasktrail.errors.UnknownTask,
        match=r"could mean blogs\.refresh_frontpage, sites\.refresh_frontpage",
    ):
        two.resolve_task_name("refresh_frontpage")
    with pytest.raises(tasktrail.errors.UnknownTask, match="unknown task 'nothing'"):
        two.get_task("nothing")


def test_the_cli_takes_the_bare_name_of_a_task(app: tasktrail.App, tt: Cli) -> None:
    spec = "tests.integration.bare_tasks:app"
    full = "tests.integration.bare_tasks.refresh_frontpage"
    made = json.loads(
        tt.ok("enqueue", "--app", spec, "refresh_frontpage", "--args", "[3]", "--json")
    )
    assert made["task"] == full
    listed = json.loads(tt.ok("jobs", "--app", spec, "--task", "refresh_frontpage", "--json"))
    assert [job["id"] for job in listed] == [made["id"]]
    added = json.loads(
        tt.ok("schedules", "add", "--app", spec, "counts", "count_comments", "--every", "5m",
              "--args", "[7]", "--json")
    )  # fmt: skip
    assert added["task"] == "tests.integration.bare_tasks.count_comments"
    # without --app there are no tasks to match: the name is used as given
    assert json.loads(tt.ok("jobs", "--task", "refresh_frontpage", "--json")) == []


READ_COMMANDS = [
    ["jobs"], ["show", "1"], ["tree", "1"], ["stats"], ["workers"], ["queues", "list"],
    ["schedules", "list"], ["schedules", "ticks", "x"], ["maintain"], ["retry", "1"],
    ["cancel", "1"],
]  # fmt: skip


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_a_read_command_where_there_is_no_database_says_so_and_creates_none(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = Cli("unused").runner
    done = runner.invoke(
        cli, command, env={"TASKTRAIL_DSN": None, "TASKTRAIL_APP": None}, catch_exceptions=False
    )
    assert done.exit_code == 1, (done.stdout, done.stderr)
    assert f"no tasktrail database at {tmp_path / 'tasktrail.db'}" in done.stderr
    assert "--dsn" in done.stderr and "TASKTRAIL_DSN" in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_a_writing_command_still_creates_the_default_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done = Cli("unused").runner.invoke(
        cli, ["migrate"], env={"TASKTRAIL_DSN": None, "TASKTRAIL_APP": None}
    )
    assert done.exit_code == 0, done.stderr
    assert (tmp_path / "tasktrail.db").exists()
    again = Cli("unused").runner.invoke(
        cli, ["jobs", "--json"], env={"TASKTRAIL_DSN": None, "TASKTRAIL_APP": None}
    )
    assert (again.exit_code, json.loads(again.stdout)) == (0, [])


def test_an_import_error_in_the_users_module_shows_where_in_their_code(tmp_path: Path) -> None:
    import os
    import subprocess

    from .conftest import tasktrail_command

    (tmp_path / "shop_tasks.py").write_text("import shop_settings\n\napp = None\n")
    (tmp_path / "shop_settings.py").write_text(
        "def load():\n    return {}['DATABASE_URL']\n\n\nCONFIG = load()\n"
    )
    (tmp_path / "broken.py").write_text("x = (\n")

    def run(spec: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tasktrail_command(), "jobs", "--app", spec, "--dsn", f"sqlite:///{tmp_path}/x.db"],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""}, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip

    done = run("shop_tasks:app")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert (
        lines[0] == "Error: cannot import module 'shop_tasks' for --app: KeyError: 'DATABASE_URL'"
    )
    assert lines[1:] == [
        f'  File "{tmp_path}/shop_tasks.py", line 1, in <module>',
        "    import shop_settings",
        f'  File "{tmp_path}/shop_settings.py", line 5, in <module>',
        "    CONFIG = load()",
        f'  File "{tmp_path}/shop_settings.py", line 2, in load',
        "    return {}['DATABASE_URL']",
    ]  # the user's frames only: no importlib, no tasktrail
    syntax = run("broken:app")
    assert syntax.returncode == 1
    assert f'  File "{tmp_path}/broken.py", line 1' in syntax.stderr
    assert "    x = (" in syntax.stderr


def _start(app: tasktrail.App, worker_id: int) -> Any:
    from tasktrail.clock import utcnow

    [job] = app.backend.exchange(
        worker_id, outcomes=(), start_ids=(), claim=1, start_claimed=1, queues=(), now=utcnow()
    ).started
    return job


def test_the_jobs_table_and_show_say_what_is_true_now(app: tasktrail.App, tt: Cli) -> None:
    from tasktrail.clock import utcnow
    from tasktrail.job import Outcome, WorkerInfo

    info = WorkerInfo("host-w", "host", 1, 1, 1, (), 30.0)
    worker_id = app.backend.register_worker(info, now=utcnow())
    handle = tasks.fail_then_succeed.enqueue(1)  # retries=3
    held = _start(app, worker_id)
    failed = Outcome(held.id, held.attempts, "failed", utcnow(), error="RuntimeError: boom",
                     retry_at=utcnow())  # fmt: skip
    app.backend.finish(worker_id, [failed], now=utcnow())

    [queued] = tt.json("jobs")
    assert (queued["status"], queued["attempts"]) == ("queued", 1)
    table = tt.ok("jobs")
    row = next(line for line in table.splitlines() if line.startswith(str(handle.id)))
    assert "(previous attempt) RuntimeError: boom" in row
    assert "host-w" not in row  # it waits in the queue: no worker holds it

    _start(app, worker_id)  # attempt 2 runs
    row = next(line for line in tt.ok("jobs").splitlines() if line.startswith(str(handle.id)))
    assert "(previous attempt) RuntimeError: boom" in row and "host-w" in row
    assert " 2/4 " in f" {row} "
    shown = tt.ok("show", str(handle.id))
    assert "error:     (previous attempt) RuntimeError: boom" in shown
    assert "attempts:  2 of 4" in shown

    out = tt.ok("cancel", str(handle.id))
    assert out.strip() == (
        f"job {handle.id}: cancel requested; it is running on worker host-w and is being "
        f"stopped (tasktrail show {handle.id} shows when it has)"
    )


def test_a_final_job_shows_the_attempts_it_used(app: tasktrail.App, tt: Cli) -> None:
    from tasktrail.clock import utcnow
    from tasktrail.job import Outcome, WorkerInfo

    worker_id = app.backend.register_worker(
        WorkerInfo("w", "host", 1, 1, 1, (), 30.0), now=utcnow()
    )
    handle = tasks.noop.enqueue()  # no retries
    held = _start(app, worker_id)
    given_back = Outcome(held.id, held.attempts, "interrupted", utcnow(), detail={"reason": "x"})
    app.backend.finish(worker_id, [given_back], now=utcnow())
    held = _start(app, worker_id)
    done = Outcome(held.id, held.attempts, "succeeded", utcnow(), result_json="null")
    app.backend.finish(worker_id, [done], now=utcnow())
    row = next(line for line in tt.ok("jobs").splitlines() if line.startswith(str(handle.id)))
    assert "/" not in row.split("succeeded")[1].split()[0]  # "2", not "2/2"
    assert "attempts:  2\n" in tt.ok("show", str(handle.id))


@pytest.mark.postgres
def test_a_read_command_on_postgresql_does_not_create_the_schema(
    pg_server: str, pg_dsn: str
) -> None:
    import psycopg

    from tasktrail.config import PostgresDsn, parse_dsn

    parsed = parse_dsn(pg_dsn)
    assert isinstance(parsed, PostgresDsn)
    runner = Cli(pg_dsn).runner
    env = {"TASKTRAIL_DSN": pg_dsn, "TASKTRAIL_APP": None}

    def schema_exists() -> bool:
        with psycopg.connect(pg_server) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (parsed.schema,)
            ).fetchone()
        return found is not None

    done = runner.invoke(cli, ["jobs"], env=env)
    assert done.exit_code == 1
    assert f"no tasktrail schema {parsed.schema!r} in" in done.stderr
    assert "tasktrail migrate" in done.stderr
    assert not schema_exists()
    assert runner.invoke(cli, ["migrate"], env=env).exit_code == 0
    listed = runner.invoke(cli, ["jobs", "--json"], env=env)
    assert (listed.exit_code, json.loads(listed.stdout)) == (0, [])
