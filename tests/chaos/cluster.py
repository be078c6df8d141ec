"""A throw-away PostgreSQL cluster of the chaos run, made with Debian's cluster tools.

The machine's main cluster is shared with other work and is never stopped: every
PostgreSQL fault (restart, stop) hits this cluster only. It is created with
``pg_createcluster`` on a free port (listening on 127.0.0.1, trust authentication, no
fsync: a clean or immediate stop loses nothing, only a host crash would) and dropped
with ``pg_dropcluster --stop`` when the run ends, also when it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["Cluster", "missing_tools", "newest_version"]

_NAME = re.compile(r"^chaos_(\d+)_\d+$")


def missing_tools() -> list[str]:
    """The cluster tools this machine lacks (empty: it can make chaos clusters)."""
    tools = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_lsclusters")
    return [tool for tool in tools if shutil.which(tool) is None]


def newest_version() -> str:
    """The newest PostgreSQL major version installed (``/usr/lib/postgresql/<n>``)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p.name for p in root.iterdir() if (p / "bin" / "postgres").exists()),
        key=lambda name: [int(part) for part in name.split(".")],
    )
    if not versions:
        raise RuntimeError("no PostgreSQL server installed under /usr/lib/postgresql")
    return versions[-1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def _drop_stale(version: str) -> None:
    """Drop chaos clusters left by runs whose process is gone (a killed harness)."""
    listing = _run("pg_lsclusters", "--no-header", check=False).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != version:
            continue
        match = _NAME.match(fields[1])
        if match and not Path(f"/proc/{match.group(1)}").exists():
            _run("pg_dropcluster", "--stop", version, fields[1], check=False)


class Cluster:
    """One chaos cluster: create, start, stop, restart, drop."""

    def __init__(self, log_path: Path) -> None:
        self.version = newest_version()
        self.name = f"chaos_{os.getpid()}_{int(time.time() * 1000) % 1_000_000}"
        self.port = free_port()
        self.log_path = log_path
        self.created = False

    @property
    def conninfo(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/chaos"

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(
            "pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, *args,
            check=check,
        )  # fmt: skip

    def create(self) -> None:
        _drop_stale(self.version)
        self.created = True  # from here on, drop() must clean up even a half-made one
        _run(
            "pg_createcluster", self.version, self.name, "--port", str(self.port),
            "--start-conf=manual", "-l", str(self.log_path), "--", "--auth=trust",
        )  # fmt: skip
        conf = Path(f"/etc/postgresql/{self.version}/{self.name}/conf.d/chaos.conf")
        conf.write_text(
            "listen_addresses = '127.0.0.1'\n"
            "fsync = off\n"
            "max_connections = 300\n"
            "log_min_messages = warning\n"
        )
        self.start()
        _run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", "-qc", "CREATE DATABASE chaos",
        )  # fmt: skip

    def start(self) -> None:
        self._ctl("start")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        self._ctl("restart", "-m", mode)
        self.wait_ready()

    def is_running(self) -> bool:
        return self._ctl("status", check=False).returncode == 0

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            ready = _run(
                "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), check=False
            ).returncode
            if ready == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"chaos cluster {self.name} not ready after {timeout:g}s")
            time.sleep(0.1)

    def drop(self) -> None:
        if self.created:
            with contextlib.suppress(Exception):
                _run("pg_dropcluster", "--stop", self.version, self.name, check=False)
            self.created = False
