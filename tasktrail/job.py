"""Job, Event, Ref and worker records, and the state and event names.

Plain frozen dataclasses with no I/O: the backends build them from rows, the app and the
CLI read them. ``to_dict()`` gives the JSON form the CLI prints with ``--json``; its keys
are the column names of the ``jobs``, ``events`` and ``workers`` tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

from .errors import InvalidArguments

__all__ = [
    "ACTIVE_STATUSES",
    "EVENT_KINDS",
    "FINAL_STATUSES",
    "STATUSES",
    "Enqueued",
    "Event",
    "HeldJob",
    "Job",
    "JobStatus",
    "NewJob",
    "Outcome",
    "QueueState",
    "Ref",
    "WorkerInfo",
    "WorkerRecord",
]

JobStatus = Literal["waiting", "queued", "reserved", "running", "succeeded", "failed", "cancelled"]

WAITING: Final = "waiting"
QUEUED: Final = "queued"
RESERVED: Final = "reserved"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

STATUSES: Final = (WAITING, QUEUED, RESERVED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE_STATUSES: Final = frozenset({WAITING, QUEUED, RESERVED, RUNNING})
FINAL_STATUSES: Final = frozenset({SUCCEEDED, FAILED, CANCELLED})

# Event kinds: which status each leads from and to is tasktrail.lifecycle.TRANSITIONS (the
# one source: the backends follow it, the tests check their SQL against it); what each
# means and who writes it is docs/lifecycle.md.
EVENT_KINDS: Final = (
    "enqueued",
    "waiting",
    "ready",
    "reserved",
    "released",
    "started",
    "succeeded",
    "failed",
    "timeout",
    "lost",
    "retry_scheduled",
    "interrupted",
    "deferred",
    "cancel_requested",
    "cancelled",
    "retried",
    "outcome_rejected",
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class Ref:
    """The business object a job is about, such as ``Ref("website", "42")``.

    Wherever a ref is taken, ``("website", 42)`` and ``"website:42"`` (the command
    line's form) do too; ``str(ref)`` is that form.

    Attributes:
        type: the kind of object, such as ``website`` (the ``ref_type`` column).
        id: its id, as text (the ``ref_id`` column): an integer id is stored as its
            digits.
    """

    type: str
    id: str

    @classmethod
    def of(cls, value: Ref | tuple[Any, Any] | str | None) -> Ref | None:
        """Build a Ref from a tuple ``(type, id)``, a ``"type:id"`` string or a Ref."""
        if value is None or isinstance(value, Ref):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, tuple | list) and len(value) == 2:
            ref_type, ref_id = value
            if not isinstance(ref_type, str) or not ref_type:
                raise InvalidArguments(f"ref type must be a non-empty string, got {ref_type!r}")
            if isinstance(ref_id, bool) or not isinstance(ref_id, str | int):
                raise InvalidArguments(f"ref id must be a string or an integer, got {ref_id!r}")
            return cls._checked(ref_type, str(ref_id))
        raise InvalidArguments(f"ref must be a (type, id) pair or 'type:id', got {value!r}")

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Parse the command-line form ``type:id``."""
        ref_type, sep, ref_id = text.partition(":")
        if not sep or not ref_type or not ref_id:
            raise InvalidArguments(f"ref must look like 'type:id' (e.g. website:42), got {text!r}")
        return cls._checked(ref_type, ref_id)

    @classmethod
    def _checked(cls, ref_type: str, ref_id: str) -> Ref:
        for part, value in (("type", ref_type), ("id", ref_id)):
            if not value:
                raise InvalidArguments(f"ref {part} must not be empty")
            if len(value) > 200:
                raise InvalidArguments(f"ref {part} is longer than 200 characters")
            if "\x00" in value:
                raise InvalidArguments(f"ref {part} must not contain NUL characters")
        return cls(ref_type, ref_id)

    def __str__(self) -> str:
        return f"{self.type}:{self.id}"


class NewJob(NamedTuple):
    """A validated request to run a task, ready for ``Backend.enqueue``.

    Arguments are already encoded as JSON text, so encoding happens once, in the
    producer, and a payload that is not JSON never reaches the backend. (A named tuple:
    as immutable as a frozen dataclass, and made several times quicker, which a bulk
    enqueue of many thousands of jobs feels.)
    """

    task: str
    queue: str
    args_json: str
    kwargs_json: str
    ref: Ref | None
    priority: int
    max_attempts: int
    timeout: float | None
    run_at: datetime | None  # None: as soon as possible (the backend's "now")
    unique_key: str | None = None  # at most one queued/reserved/running job per key
    lock_key: str | None = None  # at most one reserved/running job per key
    lock_limit: int | None = None  # ... or this many (a task's concurrency); None: one
    rate_key: str | None = None  # at most rate_limit jobs of this key start ...
    rate_limit: int | None = None
    rate_window: float | None = None  # ... within any window of this many seconds
    parent_id: int | None = None  # the job that enqueued it (a follow-up)
    root_id: int | None = None  # its tree's root (filled in by the backend from the parent)
    after: tuple[int, ...] = ()  # jobs to wait for: it is queued once they have all ended
    after_policy: str = "succeeded"  # or "finished": see Task.enqueue
    #: The enqueuer's trace context (W3C traceparent, as JSON), when it is traced
    #: (tasktrail.tracing): the job's attempts are spans below it.
    trace_context: str | None = None


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What enqueue did with one :class:`NewJob`: a new job, or an existing one it joined.

    ``created`` is False when a job with the same ``unique_key`` was already queued,
    reserved or running: ``id`` is that job.
    """

    id: int
    created: bool = True


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored: its current state. Its history is a list of :class:`Event`.

    Attributes:
        id: the job's id, from the database (increasing in enqueue order).
        task: the registered task's full name (``module.function`` unless ``name=``).
        queue: the queue it is in.
        status: ``waiting``, ``queued``, ``reserved``, ``running``, ``succeeded``,
            ``failed`` or ``cancelled`` (:data:`STATUSES`).
        ref: the business object it is about, or ``None``.
        priority: higher is claimed first (-32768 to 32767).
        args: the positional arguments, as decoded JSON.
        kwargs: the keyword arguments, as decoded JSON.
        attempts: attempts started so far (the number of ``started`` events).
        max_attempts: attempts it may have in all (the task's ``retries + 1``, fixed at
            enqueue).
        timeout: seconds an attempt may run before its process is killed; ``None``: no
            limit.
        run_at: not claimed before this time (UTC): its enqueue, its ``delay``, or the
            time of its next retry.
        created_at: when it was enqueued (UTC).
        started_at: when its latest attempt started, or ``None`` before the first.
        finished_at: when it reached a final status, or ``None`` while it has not.
        worker_id: the worker that holds it, or held it last (``None``: never held).
        worker_name: that worker's name.
        result: what the task returned (decoded JSON), once it succeeded.
        error: what went wrong with its latest failed attempt (the exception, the
            signal that killed its process, the timeout; kept while a retry is queued),
            or why a waiting job was cancelled; ``None`` once it succeeded.
        unique_key: its ``unique=`` key: at most one waiting, queued, reserved or
            running job has it.
        lock_key: its ``lock=`` or ``concurrency=`` key: at most ``lock_limit`` jobs of
            the key are reserved or running at once.
        cancel_requested_at: when a cancel was asked while it ran (its worker then
            kills it), or ``None``.
        parent_id: the job that enqueued this one while it ran (a follow-up), or the
            ``parent=`` given; ``None`` for a job enqueued from outside a task.
        root_id: the root of its tree of follow-ups: its own id for a root (as the
            backends read it; stored NULL for a root).
        waiting_for: enqueued with ``after=``: how many of the jobs it waits for have
            not ended yet (0 once it is queued); ``None`` for a job that waits for none.
        after_policy: with ``after=``: ``"succeeded"`` (it is cancelled if one of them
            does not succeed) or ``"finished"`` (it runs however they ended); ``None``
            without.
        lock_limit: how many jobs of its ``lock_key`` may be reserved or running at
            once (a task's ``concurrency``); ``None``: one (a ``lock``).
        rate_key: a task's ``rate``: at most ``rate_limit`` jobs of this key start
            within any ``rate_window`` seconds; ``None`` without.
        rate_limit: see ``rate_key``.
        rate_window: see ``rate_key``, in seconds.
    """

    id: int
    task: str
    queue: str
    status: str
    ref: Ref | None
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int
    max_attempts: int
    timeout: float | None
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: int | None
    worker_name: str | None
    result: Any
    error: str | None
    unique_key: str | None = None
    lock_key: str | None = None
    cancel_requested_at: datetime | None = None
    parent_id: int | None = None
    root_id: int | None = None
    waiting_for: int | None = None
    after_policy: str | None = None
    lock_limit: int | None = None
    rate_key: str | None = None
    rate_limit: int | None = None
    rate_window: float | None = None

    @property
    def is_final(self) -> bool:
        """Whether it has ended: succeeded, failed or cancelled (it changes no more
        unless a person retries it)."""
        return self.status in FINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``tasktrail jobs --json``): the ``jobs`` table's columns, so
        ``ref`` is ``ref_type`` and ``ref_id`` and times are ISO 8601 text."""
        return {
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "status": self.status,
            "ref_type": self.ref.type if self.ref else None,
            "ref_id": self.ref.id if self.ref else None,
            "priority": self.priority,
            "args": self.args,
            "kwargs": self.kwargs,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "run_at": _iso(self.run_at),
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "worker_id": self.worker_id,
            "worker_name": self.worker_name,
            "result": self.result,
            "error": self.error,
            "unique_key": self.unique_key,
            "lock_key": self.lock_key,
            "cancel_requested_at": _iso(self.cancel_requested_at),
            "parent_id": self.parent_id,
            "root_id": self.root_id,
            "waiting_for": self.waiting_for,
            "after_policy": self.after_policy,
            "lock_limit": self.lock_limit,
            "rate_key": self.rate_key,
            "rate_limit": self.rate_limit,
            "rate_window": self.rate_window,
        }


@dataclass(frozen=True, slots=True)
class HeldJob:
    """A job in a worker's hands (reserved or running), as the worker's hot path sees it:
    what it needs to run the job, with the arguments still the JSON text stored.

    The supervisor never decodes the arguments: it hands the text to a child, which
    decodes it (and fails the job as malformed if it is not a JSON array and object).
    ``args``/``kwargs`` decode it on demand, for callers that want to look.
    """

    id: int
    task: str
    queue: str
    status: str
    ref: Ref | None
    priority: int
    args_json: str
    kwargs_json: str
    attempts: int
    max_attempts: int
    timeout: float | None
    worker_id: int | None
    lock_key: str | None = None
    #: The pid of the child process it was started for (its ``started`` event names it).
    child_pid: int | None = None
    #: The enqueuer's trace context, if it was traced (tasktrail.tracing).
    trace_context: str | None = None

    @property
    def args(self) -> Any:
        return json.loads(self.args_json)

    @property
    def kwargs(self) -> Any:
        return json.loads(self.kwargs_json)


@dataclass(frozen=True, slots=True)
class Event:
    """One row of a job's history.

    Attributes:
        id: the event's id; events of a job are in the order of their ids.
        job_id: the job it is about.
        at: when it happened (UTC).
        kind: what happened, one of :data:`EVENT_KINDS`.
        attempt: attempts the job had started when it happened.
        worker_id: the worker (supervisor) that caused it, if any.
        worker_name: that worker's name.
        host: that worker's host.
        pid: that worker's (the supervisor's) process id.
        detail: what else is known: error, traceback, run time, who, why.
        child_pid: the worker's child process that ran the job, on the events of an
            attempt (``started``, and how it ended); ``None`` on the others.
    """

    id: int
    job_id: int
    at: datetime
    kind: str
    attempt: int
    worker_id: int | None
    worker_name: str | None
    host: str | None
    pid: int | None
    detail: dict[str, Any]
    child_pid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``tasktrail show --json``): the ``events`` table's columns and
        the worker's name, host and pid; times are ISO 8601 text."""
        return {
            "id": self.id,
            "job_id": self.job_id,
            "at": _iso(self.at),
            "kind": self.kind,
            "attempt": self.attempt,
            "worker_id": self.worker_id,
            "worker_name": self.worker_name,
            "host": self.host,
            "pid": self.pid,
            "child_pid": self.child_pid,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker client says about itself when it registers."""

    name: str
    host: str
    pid: int
    processes: int
    reserve: int
    queues: tuple[str, ...]
    lease_seconds: float
    #: ``(min, max)``: it scales its processes itself within this range.
    autoscale: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A row of the ``workers`` registry (``app.workers()``, ``tasktrail workers``).

    Attributes:
        id: the worker's id, which jobs (``worker_id``) and events name.
        name: its name (``--name``; default ``host:pid``).
        host: the host it runs on.
        pid: its supervisor's process id.
        processes: the child processes it runs now.
        reserve: the most jobs it holds at once now.
        queues: the queues it serves; empty: every queue.
        status: ``running``, ``stopped`` (it shut down) or ``lost`` (its lease expired).
        started_at: when it registered.
        heartbeat_at: its latest heartbeat.
        expires_at: its lease's end: past it without a heartbeat, it is lost.
        stopped_at: when it stopped or was declared lost, or ``None``.
        requested_processes: a count it was asked to scale to (``tasktrail workers
            scale``) and has not applied yet, or ``None``.
        autoscale_min: the lower end of the range it scales itself in
            (``--autoscale``), or ``None``.
        autoscale_max: the upper end of that range, or ``None``.
    """

    id: int
    name: str
    host: str
    pid: int
    processes: int
    reserve: int
    queues: tuple[str, ...]
    status: str  # running | stopped | lost
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    stopped_at: datetime | None
    requested_processes: int | None = None
    autoscale_min: int | None = None
    autoscale_max: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "processes": self.processes,
            "reserve": self.reserve,
            "queues": list(self.queues),
            "status": self.status,
            "started_at": _iso(self.started_at),
            "heartbeat_at": _iso(self.heartbeat_at),
            "expires_at": _iso(self.expires_at),
            "stopped_at": _iso(self.stopped_at),
            "requested_processes": self.requested_processes,
            "autoscale_min": self.autoscale_min,
            "autoscale_max": self.autoscale_max,
        }


@dataclass(frozen=True, slots=True)
class QueueState:
    """A queue as ``tasktrail queues list`` shows it (``app.queues()``).

    Attributes:
        name: the queue's name.
        paused: whether workers are kept from claiming its jobs (``tasktrail queues
            pause``).
        changed_at: when it was last paused or resumed, or ``None`` if never.
        changed_by: who did it (``user@host``), or ``None``.
        queued: its jobs queued.
        running: its jobs reserved or running.
        oldest_run_at: the ``run_at`` of its longest-waiting queued job (later than
            now when none is due yet; ``None`` with none queued).
    """

    name: str
    paused: bool
    changed_at: datetime | None
    changed_by: str | None
    queued: int
    running: int
    oldest_run_at: datetime | None = None

    def oldest_wait(self, now: datetime) -> float | None:
        """Seconds the longest-waiting due job has waited, or None with none due."""
        if self.oldest_run_at is None or self.oldest_run_at > now:
            return None
        return (now - self.oldest_run_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paused": self.paused,
            "changed_at": _iso(self.changed_at),
            "changed_by": self.changed_by,
            "queued": self.queued,
            "running": self.running,
            "oldest_run_at": _iso(self.oldest_run_at),
        }


OutcomeKind = Literal["succeeded", "failed", "timeout", "interrupted", "deferred", "cancelled"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt of a job ended, as the supervisor records it.

    ``kind`` names the event written for the end of the attempt. For ``failed`` and
    ``timeout``, ``retry_at`` set means the job goes back to ``queued`` at that time
    (a ``retry_scheduled`` event follows); ``None`` means the failure is final.
    ``interrupted`` puts the job back to ``queued`` at once (worker shutdown), and
    ``deferred`` at ``retry_at`` (the worker has no such task); neither uses up an
    attempt.
    """

    job_id: int
    attempt: int
    kind: OutcomeKind
    finished_at: datetime
    result_json: str | None = None
    error: str | None = None
    retry_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    #: The child process that ran the attempt (its events name it), if one did.
    child_pid: int | None = None

    def detail_json(self) -> str:
        return json.dumps(self.detail, separators=(",", ":"))
