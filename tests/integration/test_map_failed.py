"""`tasktrail map --failed-out` and `--retry-failed`: a run's failed rows written out,
and run again alone."""

from __future__ import annotations

import csv
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from .test_map import files_in, run_map, started_per_item, write_csv

FUNCTION = "tests.integration.map_tasks:fail_odd_until_marked"


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def statuses(state: Path) -> dict[int, str]:
    with closing(sqlite3.connect(state)) as conn:
        return {int(ref): status for ref, status in conn.execute("SELECT ref_id, status FROM jobs")}


@pytest.fixture
def rows(tmp_path: Path) -> list[dict[str, str]]:
    """Six rows of an import; the odd ones fail until the file ``marker`` exists."""
    rows = [
        {"customer": f"c{n}", "n": str(n), "marker": str(tmp_path / "marker")} for n in range(6)
    ]
    write_csv(tmp_path / "in.csv", rows)
    return rows


def test_failed_out_lists_each_failed_row_with_its_error(
    tmp_path: Path, rows: list[dict[str, str]]
) -> None:
    done = run_map(
        FUNCTION, str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"),
        "--failed-out", str(tmp_path / "failed.csv"), "--retries", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "6 rows: 3 succeeded, 3 failed" in done.stderr
    assert f"failed rows in {tmp_path / 'failed.csv'}" in done.stderr
    header, failed = read_csv(tmp_path / "failed.csv")
    assert header == ["customer", "n", "marker", "error", "attempts", "index"]
    assert failed == [
        {**rows[n], "error": f"RuntimeError: {n} is odd", "attempts": "2", "index": str(n)}
        for n in (1, 3, 5)
    ]
    assert files_in(tmp_path) == {"in.csv", "out.csv", "failed.csv", "out.csv.state.db"}


def test_failed_out_of_json_lines_is_json_lines(tmp_path: Path) -> None:
    items = [{"n": n, "marker": str(tmp_path / "marker")} for n in range(4)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    done = run_map(
        FUNCTION, str(tmp_path / "in.jsonl"), "--failed-out", str(tmp_path / "failed.jsonl")
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "failed.jsonl").read_text().splitlines()]
    assert lines == [
        {"input": items[n], "error": f"RuntimeError: {n} is odd", "attempts": 1, "index": n}
        for n in (1, 3)
    ]


def test_retry_failed_runs_only_the_failed_rows_and_rewrites_failed_out(
    tmp_path: Path, rows: list[dict[str, str]]
) -> None:
    args = (
        FUNCTION, str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"),
        "--failed-out", str(tmp_path / "failed.csv"),
    )  # fmt: skip
    assert "6 rows: 3 succeeded, 3 failed" in run_map(*args).stderr
    (tmp_path / "failed.csv").unlink()
    again = run_map(*args)  # nothing is run again without --retry-failed ...
    assert "6 rows: 3 succeeded, 3 failed" in again.stderr
    assert [row["index"] for row in read_csv(tmp_path / "failed.csv")[1]] == ["1", "3", "5"]
    state = tmp_path / "out.csv.state.db"
    assert started_per_item(state) == {n: 1 for n in range(6)}

    (tmp_path / "marker").touch()  # the cause of the failures is fixed
    retried = run_map(*args, "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert "6 rows: 6 succeeded, 0 failed" in retried.stderr
    assert started_per_item(state) == {0: 1, 1: 2, 2: 1, 3: 2, 4: 1, 5: 2}
    assert read_csv(tmp_path / "failed.csv") == (
        ["customer", "n", "marker", "error", "attempts", "index"],
        [],
    )
    _, out = read_csv(tmp_path / "out.csv")  # the output has every row, as always
    assert [(row["customer"], row["status"]) for row in out] == [
        (f"c{n}", "succeeded") for n in range(6)
    ]


def test_retry_failed_against_another_input_changes_nothing(
    tmp_path: Path, rows: list[dict[str, str]]
) -> None:
    out, state = str(tmp_path / "out.csv"), tmp_path / "out.csv.state.db"
    assert run_map(FUNCTION, str(tmp_path / "in.csv"), "-o", out).returncode == 0
    write_csv(tmp_path / "other.csv", [{**row, "customer": "x"} for row in rows])
    refused = run_map(FUNCTION, str(tmp_path / "other.csv"), "-o", out, "--retry-failed")
    assert refused.returncode == 1
    assert "holds a different item 0" in refused.stderr
    assert statuses(state) == {n: "failed" if n % 2 else "succeeded" for n in range(6)}


def test_failed_out_refuses_an_input_with_its_column_names(tmp_path: Path) -> None:
    write_csv(tmp_path / "in.csv", [{"n": "1", "error": "none"}])
    done = run_map(FUNCTION, str(tmp_path / "in.csv"), "--failed-out", str(tmp_path / "f.csv"))
    assert done.returncode == 1
    assert "has a column named 'error', which --failed-out adds itself" in done.stderr
    assert files_in(tmp_path) == {"in.csv"}  # nothing ran, nothing was stored


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-o", "in.csv"], "--output and INPUT are the same file"),
        (["--failed-out", "in.csv"], "--failed-out and INPUT are the same file"),
        (["-o", "out.csv", "--failed-out", "out.csv"], "--failed-out and --output are the same"),
    ],
)
def test_one_file_for_two_roles_is_refused(
    tmp_path: Path, rows: list[dict[str, str]], options: list[str], message: str
) -> None:
    before = (tmp_path / "in.csv").read_bytes()
    paths = [str(tmp_path / option) if option.endswith(".csv") else option for option in options]
    done = run_map(FUNCTION, str(tmp_path / "in.csv"), *paths)
    assert done.returncode == 1
    assert message in done.stderr
    assert (tmp_path / "in.csv").read_bytes() == before
    assert files_in(tmp_path) == {"in.csv"}


def test_help_describes_failed_out_and_retry_failed() -> None:
    text = " ".join(run_map("--help").stdout.split())
    assert "--failed-out FILE Also write the rows that failed here" in text
    assert "--retry-failed Run again the rows that failed" in text
