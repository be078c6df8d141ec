"""Local wake-up signals between producers and workers on one host (SQLite backend).

Each worker binds a Unix datagram socket in a directory beside the database file
(``jobs.db-wake/``). After committing jobs, a producer sends one byte to every socket
there. An idle worker therefore starts a new job within a millisecond or so of the
enqueue without polling the database; polling remains as a slow fallback for jobs
written by other means (plain SQL, or a scheduled ``run_at`` coming due).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import tempfile
from pathlib import Path

__all__ = ["CANCEL", "JOBS", "WakeListener", "notify_all", "wake_directory"]

#: What a wake-up says: jobs may be claimable, or a running job's cancellation was asked.
JOBS = b"!"
CANCEL = b"c"

_MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes on Linux


def wake_directory(database: Path) -> Path:
    """The directory holding the wake sockets of the workers of ``database``."""
    beside = Path(f"{database}-wake")
    if len(str(beside)) + 24 <= _MAX_SOCKET_PATH:
        return beside
    digest = hashlib.sha1(str(database).encode(), usedforsecurity=False).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"tasktrail-wake-{digest}"


class WakeListener:
    """A worker's wake-up socket: readable when a producer enqueued something."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(mode=0o770, exist_ok=True)
        self.path = directory / f"{name}.sock"
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.bind(str(self.path))

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> set[bytes]:
        """Read every pending signal; return what they said (``JOBS``, ``CANCEL``)."""
        said = set()
        while True:
            try:
                said.add(self._sock.recv(64))
            except (BlockingIOError, InterruptedError):
                return said

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def notify_all(directory: Path, message: bytes = JOBS) -> int:
    """Send a wake-up (``JOBS`` or ``CANCEL``) to every worker socket in ``directory``;
    return how many got it.

    Never raises for a missing directory or a dead worker: a socket nobody listens on
    is removed, a full one means that worker is already awake.
    """
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return 0
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for name in names:
            if not name.endswith(".sock"):
                continue
            path = os.path.join(directory, name)
            try:
                sock.sendto(message, path)
                sent += 1
            except BlockingIOError:
                sent += 1  # its buffer is full: it has wake-ups pending already
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
    return sent
