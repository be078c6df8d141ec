"""Quick parallel micro tasks: ``app.map(func, items)`` and ``tasktrail map``.

A map run is an ordinary tasktrail run on a private SQLite file (the *state*): every item
is a job (``ref=("item", index)``), run by the usual forking worker, with its history.
So a run can be interrupted (Ctrl-C, ``kill -9``) and started again with the same state:
finished items are never redone, and items that a killed run was holding are run again.

Beside the state a run keeps a lock file (``STATE.lock``: one run per state at a time)
and its worker's wake-up directory. A run that finished every item removes both; the
state stays (it holds every item's outcome, for ``retry_failed`` and for reruns). An
interrupted run leaves them, and the next run on the state takes them over.

The worker runs in a forked process; the caller's process reads outcomes from the state
file as they are recorded and yields them, in input order unless ``ordered=False``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from .app import App
from .backends._wake import notify_all, wake_directory
from .backends.base import JobFilter
from .errors import ConfigurationError, InvalidArguments, TasktrailError
from .job import FINAL_STATUSES, Job
from .worker import Supervisor, WorkerConfig

__all__ = ["ItemResult", "MapRun", "item_call"]

_BATCH = 1000
#: How often the caller's process looks for new outcomes while items run.
_POLL = 0.02


@dataclass(frozen=True, slots=True)
class ItemResult:
    """The outcome of one item of a map run."""

    index: int
    item: Any
    status: str  # succeeded | failed | cancelled
    result: Any
    error: str | None
    attempts: int
    runtime: float | None  # seconds, of the last attempt

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def item_call(item: Any) -> tuple[list[Any], dict[str, Any]]:
    """How an item becomes a call: a dict gives keyword arguments, a list or tuple
    positional ones, anything else is the one argument."""
    if isinstance(item, dict):
        return [], dict(item)
    if isinstance(item, list | tuple):
        return list(item), {}
    return [item], {}


class MapRun:
    """One map run over a state file. See the module docstring.

    Args:
        func: a plain function (it must be importable or defined before the run: the
            worker's processes are forked and inherit it).
        state: the SQLite file keeping the run's progress; ``None``: a temporary one
            (then the run cannot be resumed).
        processes, timeout, retries: as for a worker and a task.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        processes: int | None = None,
        timeout: float | None = None,
        retries: int = 0,
        state: str | os.PathLike[str] | None = None,
    ) -> None:
        if not callable(func):
            raise InvalidArguments(f"map needs a function, got {type(func).__name__}")
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if state is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="tasktrail-map-")
            state = os.path.join(self._temporary.name, "state.db")
        self.state = Path(state).absolute()
        self.config = WorkerConfig(
            processes=processes or os.cpu_count() or 1,
            burst=True,
            poll_interval=0.05,
            lease_seconds=10.0,
            grace=5.0,
            kill_grace=1.0,
        )
        self.app = App(f"sqlite:///{self.state}")
        name = f"map:{func.__module__}.{func.__qualname__}"
        try:
            self.task = self.app.task(name=name, retries=retries, timeout=timeout)(func)
        except TasktrailError:
            raise
        except (ValueError, TypeError) as exc:
            raise InvalidArguments(f"cannot map {name}: {exc}") from exc
        self._lock: int | None = None
        #: Every item has its final outcome: the run's lock and wake-up files can go.
        self._complete = False

    # -- the run --------------------------------------------------------------------------

    def __enter__(self) -> MapRun:
        self._take_lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the state; after a complete run, remove its lock and wake-up files."""
        self.app.close()
        if self._lock is not None:
            if self._complete:
                # Still holding the lock: no other run can be starting a worker here.
                _remove_wake_directory(wake_directory(self.state))
                if self._holds_lock_file(self._lock):
                    os.unlink(self._lock_path)
            os.close(self._lock)
            self._lock = None
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    @property
    def _lock_path(self) -> str:
        return f"{self.state}.lock"

    def _take_lock(self) -> None:
        if not self.state.parent.is_dir():
            raise ConfigurationError(
                f"cannot keep map state in {self.state}: directory {self.state.parent} "
                "does not exist"
            )
        while True:
            try:
                fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as exc:
                raise ConfigurationError(f"cannot keep map state in {self.state}: {exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ConfigurationError(
                    f"another map run is using {self.state}; wait for it or use another --state"
                ) from None
            if self._holds_lock_file(fd):
                self._lock = fd
                return
            # A run that finished removed the file between our open and our lock: the
            # lock we hold is on a file no other run will open. Lock the one at the path.
            os.close(fd)

    def _holds_lock_file(self, fd: int) -> bool:
        """Whether ``fd`` is the file at the lock's path (not one removed since)."""
        try:
            at_path = os.stat(self._lock_path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (at_path.st_dev, at_path.st_ino) == (held.st_dev, held.st_ino)

    def submit(self, items: Iterable[Any]) -> int:
        """Store the items not stored yet (a resumed run adds nothing it has); return the
        number of items. An item whose index is known must be the same item."""
        known = {
            int(job.ref.id): job
            for job in self.app.jobs(task=self.task.name, limit=None)
            if job.ref is not None
        }
        prepared = []
        count = 0
        for index, item in enumerate(items):
            count += 1
            args, kwargs = item_call(item)
            job = known.get(index)
            if job is not None:
                if job.args != args or job.kwargs != kwargs:
                    raise ConfigurationError(
                        f"the map state {self.state} holds a different item {index} "
                        f"({job.args or job.kwargs} instead of {args or kwargs}): it belongs "
                        "to another input; use another --state or delete it"
                    )
                continue
            prepared.append(self.task.prepare(*args, ref=("item", index), **kwargs))
        # Every item is checked before any is stored: one bad item stores nothing.
        for start in range(0, len(prepared), _BATCH):
            self.app.enqueue_many(prepared[start : start + _BATCH])
        return count

    def resume(self) -> None:
        """Take back what a killed earlier run held: its items run again."""
        recovered = self.app.backend.recover_lost(now=self.app.clock.now() + timedelta(days=1))
        for item in recovered:
            if item.new_status == "failed":  # it was the run that died, not the item
                self.app.retry(item.job_id)

    def retry_failed(self) -> int:
        """Queue the failed items again; return how many."""
        failed = self.app.jobs(task=self.task.name, status="failed", limit=None)
        for job in failed:
            self.app.retry(job.id)
        return len(failed)

    def results(self, total: int, ordered: bool = True) -> Iterator[ItemResult]:
        """Run the worker (forked) and yield each item's outcome as it is recorded."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the worker process, which leaves with os._exit
            status = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _die_with_parent()
                # each item's outcome goes to the caller: no log lines about items
                logging.getLogger("tasktrail.worker").setLevel(logging.ERROR)
                status = Supervisor(self.app, self.config).run()
            finally:
                os._exit(status)
        try:
            yield from self._collect(pid, total, ordered)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def _collect(self, pid: int, total: int, ordered: bool) -> Iterator[ItemResult]:
        seen: set[int] = set()
        waiting: dict[int, ItemResult] = {}
        next_index = 0
        worker_done = False
        since = None  # only read what finished since the last look (and a bit before)
        while len(seen) < total:
            if not worker_done and os.waitpid(pid, os.WNOHANG)[0] == pid:
                worker_done = True  # collect what it recorded, then stop
            finished = self.app.backend.list_jobs(
                JobFilter(
                    task=self.task.name,
                    statuses=tuple(FINAL_STATUSES),
                    finished_since=since,
                    limit=None,
                )
            )
            for job in finished:
                if job.finished_at is not None:
                    last = job.finished_at - timedelta(seconds=1)
                    since = last if since is None else max(since, last)
                index = int(job.ref.id) if job.ref else -1
                if index in seen or not 0 <= index < total:
                    continue
                seen.add(index)
                result = self._item_result(index, job)
                if not ordered:
                    yield result
                    continue
                waiting[index] = result
            while ordered and next_index in waiting:
                yield waiting.pop(next_index)
                next_index += 1
            if len(seen) >= total:
                break
            if worker_done:
                raise TasktrailError(
                    f"the map worker stopped with {total - len(seen)} items unfinished; "
                    f"run again with the same state ({self.state}) to carry on"
                )
            time.sleep(_POLL)
        self._complete = True

    def _item_result(self, index: int, job: Job) -> ItemResult:
        runtime = None
        if job.started_at and job.finished_at:
            runtime = (job.finished_at - job.started_at).total_seconds()
        args, kwargs = job.args, job.kwargs
        item: Any = kwargs if kwargs else (args[0] if len(args) == 1 else args)
        return ItemResult(
            index=index,
            item=item,
            status=job.status,
            result=job.result,
            error=job.error,
            attempts=job.attempts,
            runtime=runtime,
        )


def _remove_wake_directory(directory: Path) -> None:
    """Remove a state's wake-up directory unless a live worker listens there.

    A worker removes its own socket when it stops; one killed (an interrupted run's)
    leaves it behind. Waking every socket removes those nobody listens on, so the
    directory is then empty unless a live worker (not a map run's) uses this state.
    """
    notify_all(directory)
    with contextlib.suppress(OSError):  # not empty (a live worker), or not there
        directory.rmdir()


def _die_with_parent() -> None:
    """The worker must not outlive the process that reads its results (kill -9)."""
    from .worker.child import _die_with_parent as die

    die(os.getppid())
