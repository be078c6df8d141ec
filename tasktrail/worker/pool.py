"""The supervisor's pre-forked children: fork, hand over jobs, read, signal, reap.

A child may hold several jobs at once (its *in-flight* queue): it runs them one after
the other and reports each outcome, so that with jobs much shorter than a database
round trip it never waits for the supervisor. The supervisor decides how deep that
queue may be, and gives a busy child another job only when the one it runs is about to
end (see :mod:`.flow`); the first job in the queue is the one running.

The queue's tail may be *planned* and not yet sent: jobs claimed for this child (their
history names its pid) that wait in the supervisor until the jobs ahead of them are
short enough to queue behind, so that the supervisor can still give them back.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..job import HeldJob
from .child import child_main
from .protocol import FrameReader, encode_message
from .tally import Tally

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Assignment", "Child", "ChildPool"]

#: Jobs are sent to a busy child only while what it has been sent in one turn stays under
#: this size (one job of any size may go to an idle child), so the supervisor never
#: blocks on a full socket while a child is busy.
PIPELINE_MESSAGE_LIMIT = 64 * 1024


@dataclass(slots=True)
class Assignment:
    """A job handed to a child."""

    job: HeldJob
    started: float | None = None  # monotonic; None while it waits behind another job
    deadline: float | None = None  # monotonic; None: no timeout (or not started yet)
    sent: bool = True  # False: planned for this child, still in the supervisor
    planned_at: float = 0.0  # monotonic: when it was claimed for this child

    def begin(self, now: float) -> None:
        self.started = now
        self.deadline = now + self.job.timeout if self.job.timeout else None


@dataclass(eq=False, slots=True)
class Child:
    """One forked child process and the supervisor's end of its socket."""

    pid: int
    sock: socket.socket
    reader: FrameReader = field(default_factory=FrameReader)
    inflight: deque[Assignment] = field(default_factory=deque)
    stop_reason: str | None = None  # why we signalled it (timeout, shutdown, cancel, abandon)
    kill_at: float | None = None  # monotonic time of the SIGKILL that follows SIGTERM
    kill_sent: bool = False
    eof: bool = False
    #: Jobs it will still take before it exits by itself (--max-tasks-per-child);
    #: ``None``: no limit.
    jobs_left: int | None = None
    #: Being retired (the worker scaled down): it takes no new job, and its socket is
    #: closed once it is idle, so it exits.
    retiring: bool = False
    idle_since: float | None = None  # monotonic, seen by the autoscaler

    @property
    def assignment(self) -> Assignment | None:
        """The job it is running, if any."""
        head = self.inflight[0] if self.inflight else None
        return head if head is not None and head.sent else None

    def unsent(self) -> list[Assignment]:
        """Its planned jobs, not sent yet: the queue's tail."""
        found = []
        for assignment in reversed(self.inflight):
            if assignment.sent:
                break
            found.append(assignment)
        found.reverse()
        return found

    @property
    def healthy(self) -> bool:
        return self.stop_reason is None and not self.eof

    def capacity(self, depth: int) -> int:
        """How many more jobs it may hold, by count alone: ``depth`` at most, and never
        past its last job (``--max-tasks-per-child``). Whether a busy child should take
        one now is the flow's decision (it knows how long jobs run)."""
        if not self.healthy or self.retiring:
            return 0
        room = depth - len(self.inflight)
        if self.jobs_left is not None:
            # It exits after its last job: never hand it more, or they would be lost
            # with it (and recorded as a crash).
            room = min(room, self.jobs_left)
        return max(0, room)


class ChildPool:
    """Forks and tracks the children. All sockets are watched by one selector."""

    def __init__(
        self, app: App, selector: selectors.BaseSelector, max_tasks_per_child: int | None
    ) -> None:
        self.app = app
        self.selector = selector
        self.max_tasks_per_child = max_tasks_per_child
        self.children: dict[int, Child] = {}
        #: What the worker has done: the pool counts the jobs its children begin, the
        #: flow and the supervisor the rest.
        self.tally = Tally()
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

    def busy(self) -> list[Child]:
        return [child for child in self.children.values() if child.inflight]

    def inflight(self) -> int:
        return sum(len(child.inflight) for child in self.children.values())

    def plan(self, child: Child, jobs: list[HeldJob], now: float) -> None:
        """Queue ``jobs``, claimed for ``child``, at the end of its queue, not sent yet
        (see :meth:`send`)."""
        child.inflight.extend(Assignment(job=job, sent=False, planned_at=now) for job in jobs)
        if child.jobs_left is not None:
            child.jobs_left -= len(jobs)

    def unplan(self, child: Child, assignment: Assignment) -> None:
        """Take back a planned job that was not sent (it is given back or cancelled)."""
        child.inflight.remove(assignment)
        if child.jobs_left is not None:
            child.jobs_left += 1

    def send(self, child: Child, assignments: list[Assignment], message: bytes, now: float) -> bool:
        """Send ``child`` its planned ``assignments`` (the first ones not sent, in order;
        ``message``, encoded: one frame for all); False if the child is gone.

        The first job of a child with nothing running starts ``now`` (monotonic); the
        others start when the ones before them are done.
        """
        idle = child.assignment is None
        for assignment in assignments:
            assignment.sent = True
        if idle:
            child.inflight[0].begin(now)
            self.tally.started += 1
        try:
            child.sock.sendall(message)
        except OSError:
            self._stop_watching(child)
            return False
        return True

    def complete_head(self, child: Child, now: float) -> Assignment:
        """The running job is done: the next one in flight starts, if it was sent."""
        done = child.inflight.popleft()
        if child.inflight and child.inflight[0].sent:
            child.inflight[0].begin(now)
            self.tally.started += 1
        return done

    def skip(self, child: Child, job_id: int) -> None:
        """Ask a child not to start a job it holds but has not begun (a cancel)."""
        with contextlib.suppress(OSError):
            child.sock.sendall(encode_message({"cancel": job_id}))

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

    def close(self, child: Child) -> None:
        """Close an idle child's socket: it reads EOF and exits."""
        self._stop_watching(child)
        with contextlib.suppress(OSError):
            child.sock.shutdown(socket.SHUT_RDWR)

    def close_idle(self) -> None:
        """Close the sockets of idle children: they read EOF and exit."""
        for child in list(self.children.values()):
            if not child.inflight:
                self.close(child)
