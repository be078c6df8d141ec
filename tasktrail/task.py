"""Task: a registered function and its options."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import math
import re
import string
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from . import payload
from .clock import Clock, to_utc
from .context import current_job
from .errors import ConfigurationError, InvalidArguments
from .job import NewJob, Ref
from .retry import RetryPolicy

if TYPE_CHECKING:
    from .app import App, JobHandle

__all__ = [
    "AFTER_POLICIES",
    "ENQUEUE_OPTIONS",
    "MAX_RETRIES",
    "MAX_RETRY_DELAY",
    "Task",
    "check_ref_text",
    "is_utf8",
    "retry_policy",
    "validate_name",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Keyword arguments of ``enqueue`` that are options, not arguments of the task.
ENQUEUE_OPTIONS = (
    "ref", "queue", "priority", "delay", "run_at", "connection", "parent", "after",
    "after_policy",
)  # fmt: skip
#: What ``after_policy`` may be: the waiting job needs them all to have succeeded, or
#: only to have finished.
AFTER_POLICIES = ("succeeded", "finished")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,199}$")
_PRIORITY_RANGE = (-32768, 32767)
#: The most retries a task may ask for (attempts are counted in a 32-bit column).
MAX_RETRIES = 1_000_000
#: The most jobs of a task (or of one of its keys) a concurrency limit may allow at once.
MAX_CONCURRENCY = 10_000
#: The longest retry delay in seconds (ten years): a retry must stay a representable time.
MAX_RETRY_DELAY = 10 * 366 * 86400.0


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|m|h)\s*$")
_RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: Any, task: str) -> tuple[int, float]:
    """``"10/s"`` (also ``/m``, ``/h``, ``"5/10s"``) as ``(jobs, window in seconds)``."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigurationError(
            f"rate of task {task!r} must look like '10/s', '100/m', '1000/h' or '5/10s' "
            f"(jobs per window), got {value!r}"
        )
    count, size, unit = int(match.group(1)), match.group(2), match.group(3)
    window = (int(size) if size else 1) * _RATE_UNITS[unit]
    if not 1 <= count <= MAX_CONCURRENCY or not 0 < window <= 86400:
        raise ConfigurationError(
            f"rate of task {task!r}: 1 to {MAX_CONCURRENCY} jobs per window of at most a "
            f"day, got {value!r}"
        )
    return count, window


def validate_name(value: Any, what: str) -> str:
    """A task or queue name: letters, digits and ``_ . : -``, at most 200 characters."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigurationError(
            f"invalid {what} {value!r}: use letters, digits and '_', '.', ':', '-', "
            "starting with a letter or '_', at most 200 characters"
        )
    return value


def retry_policy(
    retries: Any, delay: Any, backoff: Any, max_delay: Any, jitter: Any
) -> RetryPolicy:
    """The :class:`RetryPolicy` of ``app.task(retries=…, retry_delay=…, …)``, checked."""
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise InvalidArguments(f"retries must be an integer, got {retries!r}")
    if retries > MAX_RETRIES:
        raise InvalidArguments(f"retries must be at most {MAX_RETRIES:,}, got {retries}")
    named = {"retry_delay": delay, "retry_backoff": backoff, "retry_max_delay": max_delay}
    for option, number in {**named, "retry_jitter": jitter}.items():
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise InvalidArguments(f"{option} must be a number, got {number!r}")
    # A retry's time must stay a datetime: an infinite or huge cap crashed the worker.
    if not (math.isfinite(delay) and max_delay <= MAX_RETRY_DELAY):
        raise InvalidArguments(
            f"retry delays must be finite and at most {MAX_RETRY_DELAY:,.0f} seconds "
            f"(ten years), got retry_delay={delay!r}, retry_max_delay={max_delay!r}"
        )
    return RetryPolicy(
        max_attempts=retries + 1,
        base_delay=delay,
        factor=backoff,
        max_delay=max_delay,
        jitter=jitter,
    )


def check_ref_text(ref: Ref | None) -> Ref | None:
    """``ref``, if its parts can be stored as text: UTF-8, so no lone surrogate."""
    if ref is not None:
        for part, value in (("type", ref.type), ("id", ref.id)):
            if not is_utf8(value):
                raise InvalidArguments(f"ref {part} {value!r} contains a lone surrogate")
    return ref


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_priority(value: Any) -> int:
    low, high = _PRIORITY_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArguments(f"priority must be an integer from {low} to {high}, got {value!r}")
    return value


class Task(Generic[P, R]):
    """A function registered with an :class:`~tasktrail.App` under a name.

    Calling the task runs the function here and now; :meth:`enqueue` asks a worker to
    run it. Made by ``@app.task`` (whose options are its attributes), not directly.

    Attributes:
        app: the app it is registered with.
        func: the function (an ``async def`` one runs on an event loop of its own per
            job).
        name: its name in the database and the CLI (default ``module.function``).
        queue: the queue its jobs go to unless ``enqueue(queue=…)`` says otherwise.
        retry: when a failed attempt runs again (from ``retries`` and the
            ``retry_*`` options).
        timeout: seconds an attempt may run before its process is killed; ``None``:
            no limit.
        priority: its jobs' priority unless ``enqueue(priority=…)`` says otherwise.
        unique: ``False``, ``True`` (same arguments and ref), ``"ref"`` or a key
            template: at most one waiting, queued, reserved or running job per key.
        lock: ``None``, ``"ref"`` or a key template: at most one job per key runs at a
            time.
        concurrency: at most this many of its jobs (per ``concurrency_key``) run at
            once, fleet-wide; ``None``: no limit.
        concurrency_key: the key template of ``concurrency``; ``None``: the task as a
            whole.
        rate: ``(jobs, window in seconds)``: at most so many of its jobs (per
            ``rate_key``) start within any such window; ``None``: no limit.
        rate_key: the key template of ``rate``; ``None``: the task as a whole.
        signature: the function's signature, which every enqueue's arguments are
            checked against.
    """

    def __init__(
        self,
        app: App,
        func: Callable[P, R],
        *,
        name: str,
        queue: str,
        retry: RetryPolicy,
        timeout: float | None,
        priority: int,
        unique: bool | str = False,
        lock: str | None = None,
        concurrency: int | None = None,
        concurrency_key: str | None = None,
        rate: str | None = None,
        rate_key: str | None = None,
    ) -> None:
        self.app = app
        self.func = func
        self.name = validate_name(name, "task name")
        self.queue = validate_name(queue, "queue name")
        self.retry = retry
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < math.inf
        ):
            # Finite: the job row carries it, and JSON (how rows travel) has no Infinity.
            raise ConfigurationError(
                f"timeout of task {name!r} must be positive seconds, got {timeout!r}"
            )
        self.timeout = float(timeout) if timeout is not None else None
        self.priority = validate_priority(priority)
        if not isinstance(unique, bool | str) or unique == "":
            raise ConfigurationError(
                f"unique of task {name!r} must be True, 'ref' or a key template such as "
                f"'{{task}}:{{ref}}', got {unique!r}"
            )
        if lock is not None and (not isinstance(lock, str) or not lock):
            raise ConfigurationError(
                f"lock of task {name!r} must be 'ref' or a key template such as "
                f"'kpi:{{kpi_id}}', got {lock!r}"
            )
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_CONCURRENCY
        ):  # fmt: skip
            raise ConfigurationError(
                f"concurrency of task {name!r} must be a whole number from 1 to "
                f"{MAX_CONCURRENCY}, got {concurrency!r}"
            )
        _check_key_template(
            name, "concurrency_key", concurrency_key, concurrency, "concurrency (how many at once)"
        )
        if concurrency is not None and lock is not None:
            raise ConfigurationError(
                f"task {name!r}: lock= is concurrency=1 with concurrency_key=; give one of them"
            )
        self.unique = unique
        self.lock = lock
        self.concurrency = concurrency
        self.concurrency_key = concurrency_key
        self.rate = parse_rate(rate, name) if rate is not None else None
        _check_key_template(name, "rate_key", rate_key, rate, "rate (such as '10/s')")
        self.rate_key = rate_key
        self.signature = inspect.signature(func)
        self._plain = _plain_parameters(self.signature)
        clash = [p for p in self.signature.parameters if p in ENQUEUE_OPTIONS]
        if clash:
            raise ConfigurationError(
                f"task {name!r} has a parameter named {clash[0]!r}, which enqueue() takes "
                f"as an option ({', '.join(ENQUEUE_OPTIONS)}); rename the parameter"
            )

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def prepare(
        self,
        *args: Any,
        ref: Ref | tuple[Any, Any] | str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        parent: Any = None,
        after: Any = None,
        after_policy: str = "succeeded",
        **kwargs: Any,
    ) -> NewJob:
        """Validate a call and return it as a :class:`NewJob`, for ``App.enqueue_many``.

        Called while a task runs (in a worker's child), the job is a follow-up of the
        one running: its ``parent_id`` names it, its ``root_id`` the root of that tree.
        ``parent`` (a job id, a :class:`JobHandle` or a :class:`Job`) names another
        parent, or one from outside a task. ``after`` and ``after_policy``: see
        :meth:`enqueue`.

        Raises:
            InvalidArguments: the arguments do not fit the function, or bad options.
            InvalidPayload: the arguments are not JSON, or too large.
            ConfigurationError: an invalid queue name.
        """
        keyed = (
            bool(self.unique)
            or self.lock is not None
            or self.concurrency_key is not None
            or self.rate_key is not None
        )
        if keyed or not _fits(self._plain, args, kwargs):
            try:
                bound = self.signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise InvalidArguments(f"cannot enqueue {self.name}: {exc}") from exc
        args_json = payload.encode(list(args), f"arguments of {self.name}")
        kwargs_json = payload.encode(kwargs, f"keyword arguments of {self.name}")
        parsed_ref = check_ref_text(Ref.of(ref))
        fields: dict[str, Any] = {}
        if keyed:
            bound.apply_defaults()  # a key template may name a parameter left at its default
            fields = {"task": self.name, "ref": parsed_ref, **bound.arguments}
        unique_key = None
        if self.unique is True:
            digest = hashlib.sha256(f"{args_json}\0{kwargs_json}".encode()).hexdigest()[:24]
            unique_key = f"{self.name}:{parsed_ref or ''}:{digest}"
        elif self.unique:
            template = "{task}:{ref}" if self.unique == "ref" else self.unique
            unique_key = _render_key(template, fields, "unique", self.name)
        lock_key, lock_limit = None, None
        if self.lock is not None:
            template = "{ref}" if self.lock == "ref" else self.lock
            lock_key = _render_key(template, fields, "lock", self.name)
        elif self.concurrency is not None:
            # its own key space: a limit of this task never shares a key with a lock
            lock_key = self._scoped_key("concurrency", self.concurrency_key, fields)
            lock_limit = self.concurrency if self.concurrency > 1 else None
        rate_key, rate_limit, rate_window = None, None, None
        if self.rate is not None:
            rate_key = self._scoped_key("rate", self.rate_key, fields)
            rate_limit, rate_window = self.rate
        return NewJob(
            task=self.name,
            queue=validate_name(queue, "queue name") if queue is not None else self.queue,
            args_json=args_json,
            kwargs_json=kwargs_json,
            ref=parsed_ref,
            priority=validate_priority(priority) if priority is not None else self.priority,
            max_attempts=self.retry.max_attempts,
            timeout=self.timeout,
            run_at=_run_at(delay, run_at, self.app.clock),
            unique_key=unique_key,
            lock_key=lock_key,
            lock_limit=lock_limit,
            rate_key=rate_key,
            rate_limit=rate_limit,
            rate_window=rate_window,
            parent_id=_parent_id(parent),
            after=_after_ids(after),
            after_policy=_after_policy(after_policy),
        )

    def _scoped_key(self, scope: str, template: str | None, fields: dict[str, Any]) -> str:
        """A limit's key, ``concurrency:TASK[:KEY]`` or ``rate:TASK[:KEY]``: the task's own
        key space, per the rendered ``template`` if there is one."""
        key = f"{scope}:{self.name}"
        if template is None:
            return key
        return f"{key}:{_render_key(template, fields, f'{scope}_key', self.name)}"

    def enqueue(
        self,
        *args: Any,
        ref: Ref | tuple[Any, Any] | str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        connection: Any = None,
        parent: Any = None,
        after: Any = None,
        after_policy: str = "succeeded",
        **kwargs: Any,
    ) -> JobHandle:
        """Ask a worker to run ``func(*args, **kwargs)``; return a handle on the job.

        Args:
            ref: the business object the job is about, ``(type, id)``.
            queue: overrides the task's queue.
            priority: overrides the task's priority (higher runs first).
            delay: seconds (or a timedelta) to wait before running it.
            run_at: an aware datetime not to run it before (instead of ``delay``).
            connection: a connection whose transaction the job joins: it exists if and
                only if that transaction commits. A psycopg (3) connection for
                PostgreSQL, a ``sqlite3`` one on the same file for SQLite, or a
                SQLAlchemy ``Connection`` or ``Session`` on either (through psycopg).
            parent: the job this one follows up (default: the one running, when called
                from a task); see :meth:`prepare`.
            after: jobs (handles, :class:`Job` records or ids) to wait for. The job is
                created ``waiting`` and is queued once every one of them has ended
                (succeeded, failed for good, or cancelled; a failure that will be
                retried is not an end). The database does it, in the transaction of
                each one's last change. Its task reads their results with
                ``current_job().after_results()``.
            after_policy: ``"succeeded"`` (the default): if one of them ends failed or
                cancelled, this job is cancelled, its history naming that job.
                ``"finished"``: it runs however they ended.
        """
        job = self.prepare(
            *args, ref=ref, queue=queue, priority=priority, delay=delay, run_at=run_at,
            parent=parent, after=after, after_policy=after_policy, **kwargs,
        )  # fmt: skip
        return self.app.enqueue_many([job], connection=connection)[0]


def _check_key_template(task: str, option: str, template: Any, limit: Any, limit_hint: str) -> None:
    """A ``concurrency_key`` or ``rate_key`` template: only with its limit, a non-empty
    string."""
    if template is None:
        return
    if limit is None:
        raise ConfigurationError(f"task {task!r}: {option} needs {limit_hint}")
    if not isinstance(template, str) or not template:
        raise ConfigurationError(
            f"{option} of task {task!r} must be a key template such as "
            f"'{{ref.type}}', got {template!r}"
        )


def _parent_id(parent: Any) -> int | None:
    """The id of the job a new one follows up: ``parent`` as given (an id, or anything
    with an ``id``: a JobHandle, a Job), else the job running in this process."""
    if parent is None:
        running = current_job()
        return running.job_id if running is not None else None
    job_id = _id_of(parent)
    if job_id is None:
        raise InvalidArguments(f"parent must be a job id, a JobHandle or a Job, got {parent!r}")
    return job_id


def _id_of(job: Any) -> int | None:
    """A job's id from an id, or anything with an ``id`` (a JobHandle, a Job); None if
    it is neither."""
    job_id = getattr(job, "id", job)
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 1:
        return None
    return job_id


def _after_ids(after: Any) -> tuple[int, ...]:
    """The ids of the jobs a new one waits for, in order, each once."""
    if after is None:
        return ()
    if isinstance(after, str | bytes) or not isinstance(after, Iterable):
        after = [after]
    ids: dict[int, None] = {}
    for item in after:
        job_id = _id_of(item)
        if job_id is None:
            raise InvalidArguments(f"after takes job ids, JobHandles or Jobs, got {item!r}")
        ids[job_id] = None
    return tuple(ids)


def _after_policy(policy: Any) -> str:
    if policy not in AFTER_POLICIES:
        raise InvalidArguments(
            f"after_policy must be one of {', '.join(map(repr, AFTER_POLICIES))}, got {policy!r}"
        )
    return str(policy)


def _plain_parameters(signature: inspect.Signature) -> tuple[dict[str, int], int] | None:
    """For a function whose parameters are all plain (positional or keyword, no ``*args``
    or ``**kwargs``): each name's position, and how many come first without a default.
    None for any other function."""
    parameters = list(signature.parameters.values())
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters):
        return None
    required = sum(1 for _ in itertools.takewhile(lambda p: p.default is p.empty, parameters))
    return {p.name: index for index, p in enumerate(parameters)}, required


def _fits(
    plain: tuple[dict[str, int], int] | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> bool:
    """Whether a call surely binds to plain parameters (``Signature.bind``, which names
    what is wrong, is several times slower: prepare uses it when this says no)."""
    if plain is None:
        return False
    positions, required = plain
    given = len(args)
    if given > len(positions):
        return False
    for name in kwargs:
        position = positions.get(name)
        if position is None or position < given:
            return False
    return given >= required or all(name in kwargs for name in list(positions)[given:required])


def _template_fields(template: str) -> set[str]:
    """The names a format template refers to: ``"{ref.id}:{kpi_id}"`` -> ref, kpi_id."""
    return {
        re.split(r"[.\[]", name, maxsplit=1)[0]
        for _, name, _, _ in string.Formatter().parse(template)
        if name is not None
    }


def _render_key(template: str, fields: dict[str, Any], option: str, task: str) -> str:
    """Fill a ``unique=`` or ``lock=`` key template from the job's ref and arguments."""
    prefix = f"cannot build the {option} key of {task} from {template!r}"
    try:
        if "ref" in _template_fields(template) and fields["ref"] is None:
            raise InvalidArguments(
                f"task {task} has {option}={template!r}, which needs the job's ref: "
                "enqueue it with ref=(type, id)"
            )
        key = template.format(**{k: "" if v is None else v for k, v in fields.items()})
    except KeyError as exc:
        raise InvalidArguments(
            f"{prefix}: {exc.args[0]!r} is not task, ref or one of its parameters"
        ) from None
    except (IndexError, ValueError, AttributeError) as exc:
        raise InvalidArguments(f"{prefix}: {type(exc).__name__}: {exc}") from None
    if not key or len(key) > 500 or "\x00" in key:
        raise InvalidArguments(f"the {option} key of {task} must be 1 to 500 characters")
    return key


def _run_at(
    delay: float | timedelta | None, run_at: datetime | None, clock: Clock
) -> datetime | None:
    if delay is not None and run_at is not None:
        raise InvalidArguments("pass delay or run_at, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise InvalidArguments(f"run_at must be a datetime, got {type(run_at).__name__}")
        return to_utc(run_at, "run_at")
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise InvalidArguments(f"delay must be seconds or a timedelta, got {delay!r}")
    if not seconds >= 0:
        raise InvalidArguments(f"delay must not be negative, got {delay!r}")
    try:
        return clock.now() + timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidArguments(f"delay {delay!r} is too far in the future") from None
