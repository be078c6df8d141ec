"""The supervisor's signal handling: handlers only remember, the loop acts.

Handlers append the signal number to a list; ``signal.set_wakeup_fd`` makes the loop's
``select`` return at once, and the loop then takes :meth:`SignalInbox.pending`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType
from typing import Any

__all__ = ["STOPPING", "SignalInbox"]

#: The signals that stop the worker (a second one: at once).
STOPPING = (signal.SIGTERM, signal.SIGINT)
#: SIGTTIN and SIGTTOU ask for one process more or fewer, as gunicorn's do.
WATCHED = (*STOPPING, signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU)


class SignalInbox:
    """Collects the ``WATCHED`` signals for the supervisor loop."""

    def __init__(self) -> None:
        self._received: list[int] = []
        self._pipe: tuple[int, int] | None = None
        self._old_handlers: dict[int, Any] = {}

    def install(self) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        signal.set_wakeup_fd(write_fd)

        def remember(signum: int, frame: FrameType | None) -> None:
            self._received.append(signum)

        for signum in WATCHED:
            self._old_handlers[signum] = signal.signal(signum, remember)

    def fileno(self) -> int:
        """Readable when a signal arrived (drain it with :meth:`drain`)."""
        assert self._pipe is not None
        return self._pipe[0]

    def descriptors(self) -> tuple[int, ...]:
        return self._pipe or ()

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.fileno(), 512)

    def pending(self) -> list[int]:
        """The signals received since the last call, oldest first."""
        received, self._received = self._received, []
        return received

    def restore(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()
        signal.set_wakeup_fd(-1)
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
