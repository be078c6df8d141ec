"""Micro tasks: app.map and `tasktrail map`, with real forked processes and real files."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

import tasktrail
from tasktrail import mapping
from tasktrail.backends._wake import wake_directory
from tasktrail.errors import ConfigurationError
from tasktrail.mapping import MapRun
from tests.integration import map_tasks

from .conftest import REPO_ROOT, tasktrail_command
from .helpers import wait_for


@pytest.fixture
def app(tmp_path: Path) -> tasktrail.App:
    return tasktrail.App(f"sqlite:///{tmp_path / 'unused.db'}")


def test_results_come_in_input_order(app: tasktrail.App) -> None:
    count = 12
    results = list(app.map(map_tasks.slower_first, [(n, count) for n in range(count)], processes=4))
    assert [r.index for r in results] == list(range(count))
    assert [r.result for r in results] == list(range(count))
    assert all(r.ok and r.attempts == 1 for r in results)


def test_unordered_results_come_as_they_finish(app: tasktrail.App) -> None:
    count = 12
    results = list(
        app.map(
            map_tasks.slower_first, [(n, count) for n in range(count)], processes=4, ordered=False
        )
    )
    assert sorted(r.index for r in results) == list(range(count))
    assert [r.index for r in results] != list(range(count))  # later items finished first


def test_failures_are_collected_not_fatal(app: tasktrail.App) -> None:
    results = list(app.map(map_tasks.fail_on_odd, range(10), processes=3, retries=1))
    assert [r.status for r in results] == ["succeeded", "failed"] * 5
    odd = results[1]
    assert odd.error == "ValueError: 1 is odd"
    assert odd.attempts == 2  # retried once
    assert [r.result for r in results if r.ok] == [0, 2, 4, 6, 8]


def test_a_timeout_kills_an_item_and_the_run_goes_on(app: tasktrail.App) -> None:
    results = list(
        app.map(map_tasks.slower_first, [(0, 300), (299, 300)], processes=2, timeout=0.5)
    )
    assert results[0].status == "failed" and "timed out" in (results[0].error or "")
    assert results[1].ok


def files_in(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


@pytest.fixture
def short_directory() -> Iterator[Path]:
    """A directory with a path short enough for the wake-up sockets to sit beside the
    state (under a long one, such as pytest's, they go to the temporary directory)."""
    directory = Path(tempfile.mkdtemp(prefix="tt-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.mark.parametrize("wake_beside_state", [True, False])
def test_a_complete_map_leaves_only_its_state(
    app: tasktrail.App, tmp_path: Path, short_directory: Path, wake_beside_state: bool
) -> None:
    directory = short_directory if wake_beside_state else tmp_path
    state = directory / ("state.db" if wake_beside_state else "s" * 60 + ".db")
    assert (wake_directory(state).parent == directory) == wake_beside_state
    before = files_in(directory)
    results = list(app.map(map_tasks.double, range(5), processes=2, state=state))
    assert [r.result for r in results] == [0, 2, 4, 6, 8]
    assert files_in(directory) - before == {state.name}  # no .lock, -wake, -wal or -shm
    assert not wake_directory(state).exists()
    again = list(app.map(map_tasks.double, range(5), processes=2, state=state))
    assert [r.attempts for r in again] == [1] * 5  # the state kept every outcome


def test_a_map_stopped_part_way_keeps_its_lock_and_carries_on(
    app: tasktrail.App, tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    results = app.map(
        map_tasks.slower_first, [(n, 20) for n in range(20)], processes=2, state=state
    )
    assert next(results).index == 0
    results.close()  # the caller stopped reading: the run did not finish
    assert Path(f"{state}.lock").exists()
    rest = list(app.map(map_tasks.slower_first, [(n, 20) for n in range(20)], state=state))
    assert [r.index for r in rest] == list(range(20))
    assert files_in(tmp_path) == {"state.db"}


def test_a_finished_run_leaves_a_lock_file_that_is_not_its_own(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    lock = Path(f"{state}.lock")
    with MapRun(map_tasks.double, state=state, processes=1) as first:
        assert [r.result for r in first.results(first.submit([1, 2]))] == [2, 4]
        lock.unlink()  # removed by hand while it ran: the next run makes and locks another
        with MapRun(map_tasks.double, state=state):
            first.close()  # complete: it removes its files, but that lock is not its own
            assert lock.exists()
            with pytest.raises(ConfigurationError, match="another map run is using"):
                MapRun(map_tasks.double, state=state).__enter__()


def test_a_lock_file_removed_before_it_was_locked_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state.db"
    lock_file_removed = False
    real_flock = fcntl.flock

    def flock_after_a_finished_run_removed_the_file(fd: int, operation: int) -> None:
        # As a run finishing between this run's open and its lock would do.
        nonlocal lock_file_removed
        if not lock_file_removed:
            lock_file_removed = True
            os.unlink(f"{state}.lock")
        real_flock(fd, operation)

    monkeypatch.setattr(mapping.fcntl, "flock", flock_after_a_finished_run_removed_the_file)
    with MapRun(map_tasks.double, state=state):
        assert lock_file_removed
        # The lock it holds is on the file at the path, so another run is refused.
        with pytest.raises(ConfigurationError, match="another map run is using"):
            MapRun(map_tasks.double, state=state).__enter__()


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run_map(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tasktrail_command(), "map", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_csv_in_csv_out(tmp_path: Path) -> None:
    rows = [
        {"url": f"http://site{i}" + ("/broken" if i == 3 else ""), "user": f"u{i}"}
        for i in range(20)
    ]
    write_csv(tmp_path / "urls.csv", rows)
    done = run_map(
        "tests.integration.map_tasks:fetch", str(tmp_path / "urls.csv"), "-o",
        str(tmp_path / "logos.csv"), "--processes", "4",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "20 rows: 19 succeeded, 1 failed" in done.stderr
    with open(tmp_path / "logos.csv", newline="") as handle:
        out = list(csv.DictReader(handle))
    assert [row["url"] for row in out] == [
        row["url"] for row in rows
    ]  # one per input row, in order
    assert list(out[0]) == ["url", "user", "status", "result", "error", "attempts", "runtime"]
    assert json.loads(out[0]["result"]) == {"user": "u0", "logo": "http://site0/logo.png"}
    assert (out[3]["status"], out[3]["error"]) == (
        "failed",
        "ConnectionError: http://site3/broken: connection refused",
    )
    assert all(row["attempts"] == "1" and float(row["runtime"]) > 0 for row in out)
    assert files_in(tmp_path) == {"urls.csv", "logos.csv", "logos.csv.state.db"}
    assert not wake_directory(tmp_path / "logos.csv.state.db").exists()


def test_json_lines_in_and_out(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps({"n": n}) for n in range(5)) + "\n")
    done = run_map("tests.integration.map_tasks:double", str(tmp_path / "in.jsonl"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["input"], line["status"], line["result"]) for line in lines] == [
        ({"n": n}, "succeeded", 2 * n) for n in range(5)
    ]


def started_per_item(state: Path) -> Counter[int]:
    with closing(sqlite3.connect(state)) as conn:
        rows = conn.execute(
            "SELECT j.ref_id FROM events e JOIN jobs j ON j.id = e.job_id WHERE e.kind = 'started'"
        ).fetchall()
    return Counter(int(row[0]) for row in rows)


def test_a_run_killed_with_sigkill_carries_on_and_redoes_nothing_finished(tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    write_csv(tmp_path / "in.csv", [{"n": str(n), "path": str(runs)} for n in range(60)])
    out, state = tmp_path / "out.csv", tmp_path / "out.csv.state.db"
    argv = [tasktrail_command(), "map", "tests.integration.map_tasks:record", str(tmp_path / "in.csv"), "-o", str(out), "-p", "3"]  # fmt: skip
    first = subprocess.Popen(argv, cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    wait_for(
        lambda: runs.exists() and len(runs.read_text().splitlines()) >= 15, "some items to run"
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    with closing(sqlite3.connect(state)) as conn:
        finished = {
            int(r[0]) for r in conn.execute("SELECT ref_id FROM jobs WHERE status = 'succeeded'")
        }
    assert 10 <= len(finished) < 60
    assert not out.exists()  # the output appears only when the run is complete
    assert Path(f"{state}.lock").exists()
    assert any(path.suffix == ".sock" for path in wake_directory(state).iterdir())

    second = run_map(
        "tests.integration.map_tasks:record", str(tmp_path / "in.csv"), "-o", str(out), "-p", "3"
    )
    assert second.returncode == 0, second.stderr
    with open(out, newline="") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["succeeded"] * 60
    starts = started_per_item(state)
    assert all(starts[n] == 1 for n in finished)  # nothing finished was run again
    # Every item ran to its end once (a killed attempt may have started twice).
    ran = Counter(int(line.split()[0]) for line in runs.read_text().splitlines())
    assert set(ran) == set(range(60))
    assert all(ran[n] == 1 for n in finished)
    # The killed run's lock file and wake-up socket went with the complete run's.
    assert files_in(tmp_path) == {"in.csv", "runs.txt", "out.csv", "out.csv.state.db"}
    assert not wake_directory(state).exists()


def test_an_interrupted_run_keeps_its_state_and_writes_no_output(tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    write_csv(tmp_path / "in.csv", [{"n": str(n), "path": str(runs)} for n in range(60)])
    args = ["tests.integration.map_tasks:record", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"), "--failed-out", str(tmp_path / "failed.csv"), "-p", "2"]  # fmt: skip
    first = subprocess.Popen(
        [tasktrail_command(), "map", *args], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: runs.exists() and len(runs.read_text().splitlines()) >= 5, "items to run")
    first.send_signal(signal.SIGINT)  # Ctrl-C
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 1 and "interrupted; run the same command again" in stderr
    assert files_in(tmp_path) == {"in.csv", "runs.txt", "out.csv.state.db", "out.csv.state.db.lock"}
    second = run_map(*args)
    assert second.returncode == 0 and "60 rows: 60 succeeded, 0 failed" in second.stderr
    assert files_in(tmp_path) == {"in.csv", "runs.txt", "out.csv", "failed.csv", "out.csv.state.db"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty: a CSV input needs a header row"),
        ("a,b\n1,2\n3\n", "line 3: 2 columns expected"),
        ("a,a\n1,2\n", "the header must name every column once"),
    ],
)
def test_bad_csv_is_refused_clearly(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "in.csv").write_text(content)
    done = run_map("tests.integration.map_tasks:double", str(tmp_path / "in.csv"))
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "in.csv.state.db").exists()


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("tests.integration.map_tasks:nope", "has no function 'nope'"),
        ("no_such_module:f", "cannot import module 'no_such_module'"),
        ("tests.integration.map_tasks", "must look like module:function"),
    ],
)
def test_an_unknown_function_is_refused_clearly(
    tmp_path: Path, function: str, message: str
) -> None:
    write_csv(tmp_path / "in.csv", [{"n": "1"}])
    done = run_map(function, str(tmp_path / "in.csv"))
    assert done.returncode == 1 and message in done.stderr


def test_an_unwritable_output_is_refused_before_anything_runs(tmp_path: Path) -> None:
    write_csv(tmp_path / "in.csv", [{"n": "1"}])
    done = run_map(
        "tests.integration.map_tasks:double",
        str(tmp_path / "in.csv"),
        "-o",
        "/nonexistent/dir/out.csv",
    )
    assert done.returncode == 1
    assert "cannot write /nonexistent/dir/out.csv" in done.stderr
    assert not (tmp_path / "in.csv.state.db").exists()


def test_a_second_run_on_the_same_state_is_refused(tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    write_csv(tmp_path / "in.csv", [{"n": str(n), "path": str(runs)} for n in range(40)])
    argv = [tasktrail_command(), "map", "tests.integration.map_tasks:record", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv")]  # fmt: skip
    first = subprocess.Popen(argv, cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_for(runs.exists, "the first run to start")
        second = run_map(
            "tests.integration.map_tasks:record",
            str(tmp_path / "in.csv"),
            "-o",
            str(tmp_path / "out.csv"),
        )
        assert second.returncode == 1 and "another map run is using" in second.stderr
    finally:
        first.kill()
        first.wait(10)


def test_the_example_writes_only_into_its_directory(tmp_path: Path) -> None:
    where_run, directory = tmp_path / "cwd", tmp_path / "logos-example"
    where_run.mkdir()
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "logos.py"), str(directory)],
        check=False,
        cwd=where_run,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "200 websites in" in done.stdout
    assert files_in(where_run) == set()  # run from a checkout, `git status` stays clean
    assert files_in(directory) == {"users.csv", "users.csv.state.db", "logos"}
    assert not wake_directory(directory / "users.csv.state.db").exists()
    assert len(files_in(directory / "logos")) > 150
