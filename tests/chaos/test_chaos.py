"""The chaos harness, small, seeded and bounded, as CI runs it.

Each run starts real ``tasktrail worker`` processes, enqueues jobs for a fault window
while a seeded schedule injects every fault kind that applies to the backend, drains,
and checks the invariants (tests/chaos/invariants.py). The bigger run is
``python -m tests.chaos`` (see tests/chaos/README.md).

On PostgreSQL the run makes its own throw-away cluster with Debian's cluster tools (the
shared server is never restarted) and, as root with ``ip``, a network namespace for the
partition. Without those tools the test is skipped with the reason, except in CI, where
it fails: there the chaos run must happen.
"""

from __future__ import annotations

import os

import pytest

from . import cluster, netns
from .harness import ChaosConfig, run_chaos

SEED = int(os.environ.get("TASKTRAIL_CHAOS_SEED", "20261128"))


def _require(missing: list[str], what: str) -> None:
    if not missing:
        return
    message = f"{what} needs {', '.join(missing)}"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so the chaos run must happen", pytrace=False)
    pytest.skip(message)


@pytest.mark.timeout(420)
def test_chaos_on_sqlite() -> None:
    config = ChaosConfig(
        backend="sqlite",
        seed=SEED,
        jobs=1000,
        window=40.0,
        workers=3,
        processes=2,
        faults_per_minute=12.0,
    )
    result = run_chaos(config)
    print(result.line())
    assert result.ok, "\n".join(
        [result.line(), *result.figures.violations[:30], f"logs: {result.run_dir}"]
    )
    kinds = {"kill_child", "kill_supervisor", "stall", "sigterm", "hang", "hog"}
    assert kinds <= set(result.faults), result.line()
    assert result.figures.statuses["succeeded"] > config.jobs // 2
    assert result.figures.waited > 10, result.line()  # fan-in jobs ran through the faults


@pytest.mark.timeout(600)
def test_chaos_on_postgresql() -> None:
    _require(cluster.missing_tools(), "the PostgreSQL chaos run (a throw-away cluster)")
    use_netns = not netns.missing_tools()
    if os.environ.get("CI"):
        _require(netns.missing_tools(), "the network partition")
    config = ChaosConfig(
        backend="postgres",
        seed=SEED,
        jobs=1000,
        window=60.0,
        workers=3,
        processes=2,
        faults_per_minute=10.0,
        netns=use_netns,
    )
    result = run_chaos(config)
    print(result.line())
    assert result.ok, "\n".join(
        [result.line(), *result.figures.violations[:30], f"logs: {result.run_dir}"]
    )
    expected = {"kill_child", "kill_supervisor", "pg_restart", "pg_stop", "pg_terminate"}
    if use_netns:
        expected.add("partition")
    assert expected <= set(result.faults), result.line()
    assert result.figures.waited > 10, result.line()  # fan-in jobs ran through the faults
    assert result.figures.statuses["succeeded"] > config.jobs // 2
    assert result.figures.waited > 10, result.line()  # fan-in jobs ran through the faults
