"""The contract suites run against a backend registered from outside them, with no edit to
a conftest: ``--tasktrail-backend`` names it (tests/backends/targets.py). Checked on the
example registration (example_target.py): every contract test is collected for it, and a
few of them pass on it, a plain-SQL one skipped for a target without SQL access."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from .example_target import TARGET
from .targets import BUILTIN, OPTION, is_contract_suite, load_targets

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SUITES = sorted(str(path.relative_to(ROOT)) for path in HERE.glob("test_*contract.py"))
EXAMPLE = f"{OPTION}=tests.backends.example_target:TARGET"


def target_id(names: str) -> re.Pattern[str]:
    """The part of a test's id that names a target (``[sqlite]``, ``[sqlite-True-one]``)."""
    return re.compile(rf"(?<=[\[-])(?:{names})(?=[\]-])")


#: The example without SQL access to its tables (a backend that is not SQLite's or
#: PostgreSQL's): the tests that need it are skipped.
WITHOUT_SQL = replace(TARGET, name="example-without-sql", sql_dialect=None)


def pytest_run(*args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a process of its own, from the repository's root."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip


def collected(*args: str) -> list[str]:
    run = pytest_run("--collect-only", *args)
    assert run.returncode == 0, run.stdout + run.stderr
    return [line for line in run.stdout.splitlines() if "::" in line]


def test_every_contract_test_is_collected_for_the_registered_backend_alone() -> None:
    default = collected(*SUITES)
    example = collected(*SUITES, EXAMPLE)
    on_sqlite = [test for test in default if target_id("sqlite").search(test)]
    assert len(on_sqlite) > 150  # the whole suite, not a few files
    others = [test for test in default if not target_id("sqlite|postgres").search(test)]
    assert "test_lifecycle_contract.py::test_the_statements_that_change_jobs_are_found" in (
        " ".join(others)
    )  # (a test with no backend, and PostgreSQL's own ones, stay as they were)
    renamed = [target_id("sqlite").sub("sqlite-example", test) for test in on_sqlite]
    assert sorted(example) == sorted(renamed + others)
    # the other tests of the folder run on the built-in backends, as always
    assert collected("tests/backends/test_sqlalchemy.py", EXAMPLE) == collected(
        "tests/backends/test_sqlalchemy.py"
    )


def test_contract_tests_pass_on_the_registered_backend() -> None:
    chosen = [
        "tests/backends/test_contract.py::test_setup_is_idempotent_and_shared",
        "tests/backends/test_contract.py::test_events_of_an_attempt_name_the_child_process_that_ran_it",
        "tests/backends/test_flow_contract.py::test_a_worker_is_told_which_wake_ups_ask_for_a_cancel",
        "tests/backends/test_lifecycle_contract.py::test_every_arrow_taken_is_one_of_the_lifecycle_and_each_of_its_arrows_is_taken",
    ]  # fmt: skip
    run = pytest_run(*chosen, EXAMPLE, f"{OPTION}=tests.backends.test_targets:WITHOUT_SQL", "-rs")
    assert run.returncode == 0, run.stdout + run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    assert re.match(r"7 passed, 1 skipped in ", summary), run.stdout
    assert "example-without-sql declares no SQL dialect" in run.stdout


def test_targets_are_named_by_built_in_name_or_module_and_attribute() -> None:
    assert load_targets(["postgres", "sqlite"]) == [BUILTIN[1], BUILTIN[0]]
    assert load_targets(["tests.backends.example_target:TARGET"]) == [TARGET]
    assert load_targets(["tests.backends.targets:BUILTIN"]) == list(BUILTIN)
    for spec, message in [
        ("mysql", "expected sqlite or postgres, or module:attribute"),
        ("tests.backends.nothing:TARGET", "No module named"),
        ("tests.backends.example_target:MISSING", "has no attribute 'MISSING'"),
        ("tests.backends.example_target:database", "is not a BackendTarget"),
    ]:
        with pytest.raises(pytest.UsageError, match=message):
            load_targets([spec])


def test_the_contract_suites_are_the_contract_modules_of_this_folder() -> None:
    assert is_contract_suite(HERE / "test_contract.py")
    assert is_contract_suite(HERE / "test_fan_in_contract.py")
    assert not is_contract_suite(HERE / "test_sqlalchemy.py")
    assert not is_contract_suite(HERE.parent / "integration" / "test_contract.py")
