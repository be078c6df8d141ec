"""The supervisor's pre-forked children: fork, hand over a job, read, signal, reap."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..job import Job
from .child import child_main
from .protocol import FrameReader, encode_message

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Assignment", "Child", "ChildPool"]


@dataclass(slots=True)
class Assignment:
    """A job a child is running."""

    job: Job
    started: float  # monotonic
    deadline: float | None  # monotonic; None: no timeout


@dataclass(eq=False, slots=True)
class Child:
    """One forked child process and the supervisor's end of its socket."""

    pid: int
    sock: socket.socket
    reader: FrameReader = field(default_factory=FrameReader)
    assignment: Assignment | None = None
    stop_reason: str | None = None  # why we signalled it (timeout, shutdown, cancel, abandon)
    kill_at: float | None = None  # monotonic time of the SIGKILL that follows SIGTERM
    kill_sent: bool = False
    eof: bool = False
    #: Jobs it will still take before it exits by itself (--max-tasks-per-child);
    #: ``None``: no limit.
    jobs_left: int | None = None

    @property
    def spent(self) -> bool:
        """It has been given its last job and exits after reporting it."""
        return self.jobs_left is not None and self.jobs_left <= 0

    @property
    def available(self) -> bool:
        """Idle and healthy: may be given a job."""
        return (
            self.assignment is None and self.stop_reason is None and not self.eof and not self.spent
        )


class ChildPool:
    """Forks and tracks the children. All sockets are watched by one selector."""

    def __init__(
        self, app: App, selector: selectors.BaseSelector, max_tasks_per_child: int | None
    ) -> None:
        self.app = app
        self.selector = selector
        self.max_tasks_per_child = max_tasks_per_child
        self.children: dict[int, Child] = {}
        # A set: the supervisor re-registers its wake-up descriptor on every wake-up
        # and heartbeat; a list would grow for as long as the worker runs.
        self._close_in_child: set[int] = set()

    def close_in_child(self, fd: int) -> None:
        """A supervisor descriptor every future child must close after the fork."""
        self._close_in_child.add(fd)

    def keep_in_child(self, fd: int) -> None:
        """Undo :meth:`close_in_child` for a descriptor the supervisor has closed."""
        self._close_in_child.discard(fd)

    def spawn(self) -> Child:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which leaves with os._exit
            try:
                ours.close()
                for child in self.children.values():
                    child.sock.close()
                for fd in self._close_in_child:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            finally:
                child_main(self.app, theirs, parent_pid, self.max_tasks_per_child)
        theirs.close()
        child = Child(pid=pid, sock=ours, jobs_left=self.max_tasks_per_child)
        self.children[pid] = child
        self.selector.register(ours, selectors.EVENT_READ, child)
        return child

    def idle(self) -> list[Child]:
        return [child for child in self.children.values() if child.available]

    def busy(self) -> list[Child]:
        return [child for child in self.children.values() if child.assignment is not None]

    def assign(self, child: Child, job: Job, message: dict[str, Any]) -> bool:
        """Hand ``job`` to ``child``. False if the child is gone (it will be reaped)."""
        now = time.monotonic()
        child.assignment = Assignment(
            job=job, started=now, deadline=now + job.timeout if job.timeout else None
        )
        if child.jobs_left is not None:
            # The child counts too and exits after its last job: never hand it another,
            # or that job would be lost with it (and recorded as a crash).
            child.jobs_left -= 1
        try:
            child.sock.sendall(encode_message(message))
        except OSError:
            self._stop_watching(child)
            return False
        return True

    def read(self, child: Child) -> list[dict[str, Any]]:
        """Messages a readable child sent; marks EOF when it closed its end."""
        try:
            data = child.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            self._stop_watching(child)
            return []
        return child.reader.feed(data)

    def drain(self, child: Child) -> list[dict[str, Any]]:
        """Whatever a dead child managed to send before it died."""
        messages: list[dict[str, Any]] = []
        child.sock.setblocking(False)
        while True:
            try:
                data = child.sock.recv(1 << 16)
            except OSError:
                break
            if not data:
                break
            messages.extend(child.reader.feed(data))
        return messages

    def _stop_watching(self, child: Child) -> None:
        if not child.eof:
            child.eof = True
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(child.sock)

    def terminate(self, child: Child, reason: str, kill_at: float) -> None:
        """Ask a child to stop (SIGTERM); the supervisor kills it at ``kill_at`` if not."""
        if child.stop_reason is None:
            child.stop_reason = reason
        if child.kill_at is None:
            child.kill_at = kill_at
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)

    def kill(self, child: Child, reason: str | None = None) -> None:
        if child.stop_reason is None and reason is not None:
            child.stop_reason = reason
        if not child.kill_sent:
            child.kill_sent = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)

    def reap(self) -> list[tuple[Child, int]]:
        """Children that exited since the last call, with their wait status."""
        reaped = []
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self._stop_watching(child)
            reaped.append((child, status))
        return reaped

    def forget(self, child: Child) -> None:
        child.sock.close()

    def close_idle(self) -> None:
        """Close the sockets of idle children: they read EOF and exit."""
        for child in list(self.children.values()):
            if child.assignment is None:
                self._stop_watching(child)
                with contextlib.suppress(OSError):
                    child.sock.shutdown(socket.SHUT_RDWR)
