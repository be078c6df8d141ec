"""Fixtures of the integration ring: a database, and real worker processes on it.

Every test here takes its database from ``worker_dsn``. It is SQLite for now; to run
the whole ring on both backends, make it return the parametrized ``dsn`` fixture of
``tests/conftest.py`` instead (one line).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tasktrail

from . import tasks
from .helpers import DEFAULT_TIMEOUT, child_pids, wait_for
from .proxy import Proxy

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = "tests.integration.tasks:app"


def tasktrail_command() -> str:
    """The ``tasktrail`` console script of the interpreter running the tests."""
    beside = Path(sys.executable).parent / "tasktrail"
    if beside.exists():
        return str(beside)
    found = shutil.which("tasktrail")
    if found is None:
        pytest.fail("the tasktrail command is not installed (pip install -e .)")
    return found


@pytest.fixture
def worker_dsn(dsn: str) -> str:
    """The database of every integration test: each runs on SQLite and on PostgreSQL."""
    return dsn


@pytest.fixture
def app(worker_dsn: str) -> Iterator[tasktrail.App]:
    """The tasks' app, pointed at this test's database (for enqueueing and queries)."""
    tasks.app.configure(worker_dsn)
    try:
        yield tasks.app
    finally:
        tasks.app.close()


@pytest.fixture
def pg_app(pg_dsn: str) -> Iterator[tasktrail.App]:
    """The tests' app on PostgreSQL alone (for what only it promises)."""
    tasks.app.configure(pg_dsn)
    try:
        yield tasks.app
    finally:
        tasks.app.close()


@pytest.fixture
def proxy(pg_dsn: str) -> Iterator[Proxy]:
    """A TCP relay to PostgreSQL that a test can cut and restore (``proxy.dsn``)."""
    relay = Proxy(pg_dsn)
    relay.start()
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture
def record_file(tmp_path: Path) -> str:
    """Where tasks append their lines (see ``tasks.record`` and ``tasks.block``)."""
    return str(tmp_path / "record.jsonl")


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """A file ``tasks.block`` waits for: create it to let blocked jobs finish."""
    return tmp_path / "gate"


class Worker:
    """A ``tasktrail worker`` subprocess, in its own session (process group)."""

    def __init__(self, proc: subprocess.Popen[bytes], name: str, log_path: Path) -> None:
        self.proc = proc
        self.name = name
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def diagnose(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"worker {self.name} ({state}) log:\n{self.log()[-4000:]}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the supervisor only."""
        self.proc.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the supervisor and its children, like Ctrl-C in a terminal."""
        os.killpg(self.proc.pid, signum)

    def children(self) -> list[int]:
        return child_pids(self.proc.pid)

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Wait for the worker to exit and return its exit status."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.name} did not exit within {timeout:g}s\n{self.diagnose()}"
            ) from None

    def record(self, app: tasktrail.App) -> tasktrail.job.WorkerRecord:
        """This worker's row in the registry."""
        rows = [w for w in app.workers(include_stopped=True, limit=None) if w.name == self.name]
        assert len(rows) == 1, f"expected one registry row named {self.name}, got {rows}"
        return rows[0]

    def wait_registered(self, app: tasktrail.App) -> tasktrail.job.WorkerRecord:
        wait_for(
            lambda: any(w.name == self.name for w in app.workers(limit=None)),
            f"worker {self.name} to register",
            diagnose=self.diagnose,
        )
        return self.record(app)

    def kill(self) -> None:
        """SIGKILL the worker and everything in its process group, then reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


class WorkerFactory:
    """Starts workers for one test and kills whatever is left of them afterwards."""

    #: Short settings so tests are quick; each test overrides what it is about.
    DEFAULTS: dict[str, Any] = {
        "processes": 2,
        "poll_interval": 0.1,
        "lease": 5.0,
        "grace": 10.0,
        "kill_grace": 0.5,
    }

    def __init__(self, dsn: str, directory: Path, prefix: str = "w") -> None:
        self.dsn = dsn
        self.directory = directory
        self.prefix = prefix  # of the workers' names: w1, w2, ...
        self.started: list[Worker] = []

    def start(self, *, app_spec: str = APP_SPEC, **options: Any) -> Worker:
        """Start ``tasktrail worker`` with ``options`` (``reserve=3`` -> ``--reserve 3``;
        ``True`` -> a bare flag)."""
        name = f"{self.prefix}{len(self.started) + 1}"
        settings = {**self.DEFAULTS, **options}
        argv = [tasktrail_command(), "worker", "--app", app_spec, "--name", name, "--verbose"]
        for key, value in settings.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                argv.append(flag)
            elif value is not None and value is not False:
                argv.extend([flag, str(value)])
        env = {**os.environ, "TASKTRAIL_DSN": self.dsn}
        env.pop("TASKTRAIL_APP", None)
        log_path = self.directory / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(proc, name, log_path)
        self.started.append(worker)
        return worker

    def diagnose(self) -> str:
        return "\n".join(worker.diagnose() for worker in self.started)

    def kill_all(self) -> None:
        for worker in self.started:
            worker.kill()


@pytest.fixture
def workers(worker_dsn: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(worker_dsn, tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()
