"""App: configuration, the task registry, the enqueue API and job queries."""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from .backends import Activity, Backend, JobFilter, TaskStats, open_backend
from .clock import SYSTEM_CLOCK, Clock, to_utc
from .config import parse_dsn, redact_dsn, resolve_dsn
from .errors import InvalidArguments, InvalidTransition, JobNotFound, UnknownTask
from .job import ACTIVE_STATUSES, STATUSES, Event, Job, NewJob, QueueState, Ref, WorkerRecord
from .schedule import (
    ScheduleDef,
    ScheduleRecord,
    Schedules,
    parse_spec,
    validate_catch_up,
    validate_schedule_name,
)
from .task import Task, check_ref_text, is_utf8, retry_policy, validate_name

if TYPE_CHECKING:
    from .mapping import ItemResult
    from .worker.supervisor import WorkerConfig

__all__ = ["App", "JobHandle", "whoami"]

P = ParamSpec("P")
R = TypeVar("R")

#: Ids and limits are 64-bit integers in both databases.
_BIGINT_MAX = 2**63 - 1


def _job_id(value: Any) -> int:
    """``value`` as a job id: not an integer is an error; out of range, no such job."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArguments(f"a job id is an integer, got {value!r}")
    if not 1 <= value <= _BIGINT_MAX:
        raise JobNotFound(f"no job with id {value}")
    return value


def _limit(value: Any) -> int | None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _BIGINT_MAX
    ):
        raise InvalidArguments(f"limit must be 0 or more (None for all), got {value!r}")
    return value


def whoami() -> str:
    """``user@host`` of this process, recorded in history for manual actions."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class JobHandle:
    """What ``enqueue`` returns: the job's id and ways to look at it.

    Attributes:
        app: the app the job was enqueued with (the handle reads through it).
        id: the job's id.
        created: False when the task is unique and an active job with the same key
            existed: this handle is that job, and no new one was made.
    """

    app: App
    id: int
    created: bool = True

    def get(self) -> Job:
        """The job's current state."""
        return self.app.job(self.id)

    def events(self) -> list[Event]:
        """The job's history so far."""
        return self.app.events(self.id)

    def cancel(self, reason: str | None = None) -> Job:
        """Cancel the job (:meth:`App.cancel`): at once if it waits, else its worker is
        asked to kill it; ``reason`` goes in its history."""
        return self.app.cancel(self.id, reason=reason)

    def wait(self, timeout: float = 60.0, poll_interval: float = 0.05) -> Job:
        """Block until the job is final (succeeded, failed or cancelled) and return it.

        ``timeout`` is counted on the app's clock (:attr:`App.clock`).

        Raises:
            TimeoutError: the job is not final after ``timeout`` seconds.
        """
        import time

        deadline = self.app.clock.monotonic() + timeout
        while True:
            job = self.get()
            if job.is_final:
                return job
            if self.app.clock.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {job.status} after {timeout:g}s")
            time.sleep(poll_interval)


class App:
    """A tasktrail application: where jobs live and which tasks exist.

    Args:
        dsn: ``sqlite:///path.db`` (the default, ``sqlite:///tasktrail.db``) or
            ``postgresql://…``; when omitted, ``TASKTRAIL_DSN`` is used.
        schema: the PostgreSQL schema holding tasktrail's tables (default ``tasktrail``,
            or ``TASKTRAIL_SCHEMA``).
        clock: where the app, and a worker it runs, read the time (the system's by
            default; a test passes a :class:`~tasktrail.clock.ManualClock`).

    Attributes:
        dsn: the database it is pointed at (see :meth:`configure`).
        tasks: the registered tasks, by name.
        periodics: schedules declared with ``@app.periodic``, by name; workers store them.
        schedules: the stored schedules (:class:`~tasktrail.schedule.Schedules`): list,
            pause, resume, delete, their ledger.
        clock: where the app and its worker read the time (wall and monotonic).
    """

    def __init__(
        self, dsn: str | None = None, *, schema: str | None = None, clock: Clock | None = None
    ) -> None:
        #: Where the app and its worker read the time (wall and monotonic).
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self.tasks: dict[str, Task[Any, Any]] = {}
        #: Schedules declared with ``@app.periodic``, by name; workers store them.
        self.periodics: dict[str, ScheduleDef] = {}
        self.schedules = Schedules(self)
        self._schema = schema
        self._backend: Backend | None = None
        self.configure(dsn)

    def configure(self, dsn: str | None) -> None:
        """Point the app at another database (the CLI's ``--dsn`` uses this)."""
        resolved = resolve_dsn(dsn)
        parsed = parse_dsn(resolved, self._schema)  # validate early
        self.close()
        self.dsn = resolved
        self._parsed = parsed

    @property
    def url(self) -> str:
        """The DSN with any password hidden, for logs and output."""
        return redact_dsn(self.dsn)

    @property
    def backend(self) -> Backend:
        """The backend connection of this process, opened (and set up) on first use.

        A forked process gets its own connection: one opened before the fork is never
        used on both sides of it.
        """
        if self._backend is None or self._backend.owner_pid != os.getpid():
            backend = open_backend(self._parsed)
            try:
                backend.setup()
            except BaseException:
                backend.close()
                raise
            self._backend = backend
        return self._backend

    def setup(self) -> None:
        """Open the database now and create or migrate tasktrail's tables (otherwise done
        on first use). A service whose own code writes to the same SQLite file calls it
        at start: the first open turns the file to WAL mode, which it cannot do while
        another connection's transaction holds a lock on it."""
        self.backend  # noqa: B018  (opened and set up on first use)

    def close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None and backend.owner_pid == os.getpid():
            backend.close()

    # -- tasks --------------------------------------------------------------------

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 0,
        timeout: float | None = None,
        priority: int = 0,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        retry_max_delay: float = 3600.0,
        retry_jitter: float = 0.25,
        unique: bool | str = False,
        lock: str | None = None,
        concurrency: int | None = None,
        concurrency_key: str | None = None,
        rate: str | None = None,
        rate_key: str | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(  # type: ignore[misc]  # mypy cannot match the ParamSpec across overloads
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 0,
        timeout: float | None = None,
        priority: int = 0,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        retry_max_delay: float = 3600.0,
        retry_jitter: float = 0.25,
        unique: bool | str = False,
        lock: str | None = None,
        concurrency: int | None = None,
        concurrency_key: str | None = None,
        rate: str | None = None,
        rate_key: str | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task: ``@app.task`` or ``@app.task(retries=3, …)``.

        Args:
            name: the task's name in the database (default ``module.function``).
            queue: the queue its jobs go to.
            retries: how many times a failed attempt is retried.
            timeout: seconds an attempt may run before its process is killed.
            priority: higher runs first.
            retry_delay: seconds before the first retry (the backoff:
                :class:`~tasktrail.retry.RetryPolicy`).
            retry_backoff: growth of the delay per attempt.
            retry_max_delay: cap on the delay, in seconds.
            retry_jitter: relative spread of the delay, 0 to 1, so that jobs that failed
                together do not retry together.
            unique: at most one queued, reserved or running job per key: ``True`` (same
                arguments and ref), ``"ref"`` (same ref), or a key template such as
                ``"kpi:{kpi_id}"`` (fields: task, ref and the function's parameters).
                Enqueueing a duplicate returns the existing job (``handle.created`` is
                False).
            lock: at most one job per key runs at any moment, across all workers:
                ``"ref"`` (one job per business object at a time) or a key template. The
                others wait in the queue, in order, without holding a worker slot.
            concurrency: at most this many of its jobs run at any moment, across every
                worker on every host (``lock`` is the case of 1, per key).
            concurrency_key: with ``concurrency``, the limit applies per key, a
                template as for ``lock`` (``"{ref.type}"``, ``"{ref}"``,
                ``"crm:{account_id}"``); without, to the task as a whole.
            rate: at most so many of its jobs start within any window of time, across
                every worker: ``"10/s"``, ``"100/m"``, ``"1000/h"``, ``"5/10s"``.
            rate_key: with ``rate``, the rate applies per key (a template as for
                ``lock``); without, to the task as a whole.
        """
        if func is not None and not callable(func):
            raise InvalidArguments(f"app.task takes a function, got {type(func).__name__}")
        policy = retry_policy(retries, retry_delay, retry_backoff, retry_max_delay, retry_jitter)

        def register(function: Callable[P, R]) -> Task[P, R]:
            default = f"{function.__module__}.{function.__qualname__}"
            task_name = default if name is None else name  # name="" is refused, not ignored
            task = Task(
                self,
                function,
                name=task_name,
                queue=queue,
                retry=policy,
                timeout=timeout,
                priority=priority,
                unique=unique,
                lock=lock,
                concurrency=concurrency,
                concurrency_key=concurrency_key,
                rate=rate,
                rate_key=rate_key,
            )
            existing = self.tasks.get(task.name)
            if existing is not None and existing.func is not function:
                raise InvalidArguments(f"a task named {task.name!r} is already registered")
            self.tasks[task.name] = task
            return task

        return register(func) if func is not None else register

    def get_task(self, name: str) -> Task[Any, Any]:
        """The registered task called ``name``.

        Raises:
            UnknownTask: no task has that name.
        """
        task = self.tasks.get(self.resolve_task_name(name))
        if task is None:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTask(f"unknown task {name!r}; registered tasks: {known}")
        return task

    def resolve_task_name(self, name: str) -> str:
        """The full name of the task ``name`` means: itself if a task has it, else the
        one registered task whose name ends in ``.name`` (a function's bare name, as
        ``refresh_frontpage`` for ``myproject.tasks.refresh_frontpage``), else ``name``
        as given (jobs of a task this app no longer has keep their name).

        Raises:
            UnknownTask: several tasks end in that name; the message lists them.
        """
        if name in self.tasks or not isinstance(name, str):
            return name
        meant = sorted(
            full for full in self.tasks if full.endswith(f".{name}") or full.endswith(f":{name}")
        )
        if len(meant) > 1:
            raise UnknownTask(
                f"task name {name!r} could mean {', '.join(meant)}: use the full name"
            )
        return meant[0] if meant else name

    # -- periodic jobs --------------------------------------------------------------

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        ref: Ref | tuple[Any, Any] | str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        catch_up: str = "latest",
        skip_if_running: bool = False,
        calendar: str | None = None,
        calendar_rule: str = "business_days",
        closed_days: Sequence[Any] = (),
        task_name: str | None = None,
        **task_options: Any,
    ) -> Callable[[Callable[P, R] | Task[P, R]], Task[P, R]]:
        """Run a task on a schedule: ``@app.periodic(cron="*/5 * * * *")``.

        Decorates a function (registered as a task with ``task_options``) or a task. The
        schedule (named after the task unless ``name`` is given) is stored by every
        worker at start; each due time fires exactly one job whatever the number of
        workers. See :meth:`Schedules.add` for the options; ``task_name`` names the task
        registered for a plain function (``name`` names the schedule).
        """

        def register(target: Callable[P, R] | Task[P, R]) -> Task[P, R]:
            if isinstance(target, Task):
                task = target
            else:
                task = self.task(name=task_name, **task_options)(target)
            definition = self._schedule_definition(
                name or task.name,
                task,
                cron=cron,
                every=every,
                args=args,
                kwargs=kwargs or {},
                ref=ref,
                queue=queue,
                priority=priority,
                catch_up=catch_up,
                skip_if_running=skip_if_running,
                calendar=calendar,
                calendar_rule=calendar_rule,
                closed_days=closed_days,
                source="code",
            )
            self.periodics[definition.name] = definition
            return task

        return register

    def _schedule_definition(
        self,
        name: str,
        task: str | Task[Any, Any],
        *,
        cron: str | None,
        every: float | timedelta | None,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        ref: Ref | tuple[Any, Any] | str | None,
        queue: str | None,
        priority: int | None,
        catch_up: str,
        skip_if_running: bool,
        source: str,
        calendar: str | None = None,
        calendar_rule: str = "business_days",
        closed_days: Sequence[Any] = (),
    ) -> ScheduleDef:
        """Validate a schedule, its task and its arguments (a trial ``prepare``)."""
        if not isinstance(task, str | Task):
            raise InvalidArguments(f"task of schedule {name!r} must be a task or its name")
        task_object = self.get_task(task) if isinstance(task, str) else task
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise InvalidArguments(f"args of schedule {name!r} must be a list or tuple")
        if not isinstance(kwargs, dict):
            raise InvalidArguments(f"kwargs of schedule {name!r} must be a dict")
        trial = task_object.prepare(*args, ref=ref, queue=queue, priority=priority, **kwargs)
        return ScheduleDef(
            name=validate_schedule_name(name),
            task=task_object.name,
            spec=parse_spec(cron, every, calendar, calendar_rule, closed_days),
            args_json=trial.args_json,
            kwargs_json=trial.kwargs_json,
            ref=trial.ref,
            queue=queue,
            priority=priority,
            catch_up=validate_catch_up(catch_up),
            skip_if_running=bool(skip_if_running),
            source=source,
        )

    def _schedule_job(self, record: ScheduleRecord, due: datetime) -> NewJob | None:
        """The job a schedule fires (``None``: this app does not know its task)."""
        task = self.tasks.get(record.definition.task)
        if task is None:
            return None
        definition = record.definition
        return task.prepare(
            *json.loads(definition.args_json),
            ref=definition.ref,
            queue=definition.queue,
            priority=definition.priority,
            **json.loads(definition.kwargs_json),
        )

    # -- enqueue ------------------------------------------------------------------

    def enqueue(self, task_name: str, *args: Any, **kwargs: Any) -> JobHandle:
        """Enqueue a registered task by name; same options as :meth:`Task.enqueue`."""
        return self.get_task(task_name).enqueue(*args, **kwargs)

    def enqueue_many(self, jobs: Iterable[NewJob], *, connection: Any = None) -> list[JobHandle]:
        """Insert many prepared jobs (``task.prepare(...)``) at once: one statement, or
        on PostgreSQL from 100 jobs without unique keys, one statement for their ids and
        events and a binary COPY of the jobs.

        All are inserted or none. With ``connection``, they join the caller's
        transaction.
        """
        if not isinstance(jobs, Iterable):
            raise InvalidArguments(
                f"enqueue_many takes jobs from task.prepare(...), got {type(jobs).__name__}"
            )
        batch = list(jobs)
        for job in batch:
            if not isinstance(job, NewJob):
                raise InvalidArguments(
                    f"enqueue_many takes jobs from task.prepare(...), got {type(job).__name__}"
                )
            self.get_task(job.task)
        if connection is None:
            connection = self.transaction_connection()
        from .tracing import enqueue_span  # (loads OpenTelemetry only once enqueuing)

        with enqueue_span(batch) as span:
            enqueued = self.backend.enqueue(
                span.jobs(batch), now=self.clock.now(), connection=connection
            )
            span.inserted([item.id for item in enqueued])
        return [JobHandle(self, item.id, item.created) for item in enqueued]

    def transaction_connection(self) -> Any:
        """The connection an enqueue without ``connection=`` joins the transaction of;
        ``None``: the App's own (each enqueue commits by itself). An integration
        overrides it: ``tasktrail.contrib.django``'s App returns Django's connection
        inside ``transaction.atomic()``."""
        return None

    # -- looking at jobs ------------------------------------------------------------

    def job(self, job_id: int) -> Job:
        """One job by id.

        Raises:
            JobNotFound: no such job.
        """
        job = self.backend.get_job(_job_id(job_id))
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job

    def jobs(
        self,
        *,
        ref: Ref | tuple[Any, Any] | str | None = None,
        ref_type: str | None = None,
        task: str | None = None,
        queue: str | None = None,
        status: str | Iterable[str] | None = None,
        worker_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        descendants: bool = False,
        before_id: int | None = None,
        limit: int | None = 100,
    ) -> list[Job]:
        """Jobs matching every given filter, newest first. ``limit=None`` for all;
        ``before_id``: only jobs with a lower id (the next page after that one).

        With ``descendants=True``, the jobs of ``ref`` (or ``ref_type``) come with every
        follow-up below them, whatever their own refs; the other filters apply to all.
        """
        parsed_ref = check_ref_text(Ref.of(ref))
        if descendants and parsed_ref is None and ref_type is None:
            raise InvalidArguments("descendants=True needs ref= or ref_type=: whose follow-ups?")
        for option, text in (("ref_type", ref_type), ("task", task), ("queue", queue)):
            if text is not None and (
                not isinstance(text, str) or "\x00" in text or not is_utf8(text)
            ):
                raise InvalidArguments(f"{option} must be UTF-8 text without NUL, got {text!r}")
        for option, moment in (("since", since), ("until", until)):
            if moment is not None and not isinstance(moment, datetime):
                raise InvalidArguments(f"{option} must be a datetime, got {moment!r}")
        for option, number in (("worker_id", worker_id), ("before_id", before_id)):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
                raise InvalidArguments(f"{option} must be an integer, got {number!r}")
        if worker_id is not None and not 1 <= worker_id <= _BIGINT_MAX:
            return []  # no worker has such an id
        statuses: tuple[str, ...] | None = None
        if status is not None:
            if not isinstance(status, str | Iterable):
                raise InvalidArguments(f"status must be a status or several, got {status!r}")
            statuses = (status,) if isinstance(status, str) else tuple(status)
            unknown = [s for s in statuses if s not in STATUSES]
            if unknown:
                raise InvalidArguments(
                    f"unknown status {unknown[0]!r}; statuses are {', '.join(STATUSES)}"
                )
        limit = _limit(limit)
        return self.backend.list_jobs(
            JobFilter(
                ref_type=parsed_ref.type if parsed_ref else ref_type,
                ref_id=parsed_ref.id if parsed_ref else None,
                task=task,
                queue=queue,
                statuses=statuses,
                worker_id=worker_id,
                since=to_utc(since, "since") if since else None,
                until=to_utc(until, "until") if until else None,
                descendants=bool(descendants),
                before_id=before_id,
                limit=limit,
            )
        )

    def tree(self, job_id: int) -> list[Job]:
        """Every job of the tree ``job_id`` is in, from its root down: the root first,
        then the follow-ups by id (a parent before its follow-ups).

        Raises:
            JobNotFound: no such job.
        """
        job = self.job(job_id)
        root = job.root_id or job.id
        found = self.backend.list_jobs(JobFilter(tree=root, limit=None))
        return sorted(found, key=lambda each: each.id)

    def events(self, job_id: int) -> list[Event]:
        """A job's history, oldest first.

        Raises:
            JobNotFound: no such job.
        """
        events = self.backend.list_events(_job_id(job_id))
        if not events and self.backend.get_job(job_id) is None:
            raise JobNotFound(f"no job with id {job_id}")
        return events

    def after_results(self, job_id: int) -> dict[int, Any]:
        """The results of the jobs ``job_id`` was enqueued to wait for (``after=``), by
        id: each one's result if it succeeded, else ``None``. A task reads its own
        with ``current_job().after_results()``."""
        return {
            after_id: result if status == "succeeded" else None
            for after_id, status, result in self.backend.after_results(_job_id(job_id))
        }

    def cancel(self, job_id: int, *, reason: str | None = None, tree: bool = False) -> Job:
        """Cancel a job: waiting, queued or reserved at once, a running one is stopped by its
        worker; its history records who and why.

        With ``tree=True``, every follow-up below it that is still queued, reserved or
        running is cancelled too (their history names this job), and the job itself is
        left as it is if it has already ended. See :meth:`cancel_tree`.
        """
        if tree:
            return self.cancel_tree(job_id, reason=reason)[0]
        if reason is not None and (not isinstance(reason, str) or not is_utf8(reason)):
            raise InvalidArguments(f"reason must be UTF-8 text, got {reason!r}")
        return self.backend.cancel(
            _job_id(job_id), now=self.clock.now(), by=whoami(), reason=reason
        )

    def cancel_tree(self, job_id: int, *, reason: str | None = None) -> list[Job]:
        """Cancel ``job_id`` (unless it has ended) and every active follow-up below it;
        return the job, then the follow-ups cancelled, as they are now."""
        if reason is not None and (not isinstance(reason, str) or not is_utf8(reason)):
            raise InvalidArguments(f"reason must be UTF-8 text, got {reason!r}")
        top = self.job(job_id)
        below = self.backend.list_jobs(
            JobFilter(
                ids=(top.id,), descendants=True, statuses=tuple(sorted(ACTIVE_STATUSES)), limit=None
            )
        )
        by, now = whoami(), self.clock.now()
        changed = [
            top if top.is_final else self.backend.cancel(top.id, now=now, by=by, reason=reason)
        ]
        why = f"job {top.id} was cancelled with its tree" + (f": {reason}" if reason else "")
        for job in sorted(below, key=lambda each: each.id):
            if job.id == top.id:
                continue
            try:
                changed.append(self.backend.cancel(job.id, now=now, by=by, reason=why))
            except InvalidTransition:
                continue  # it ended meanwhile
        return changed

    def retry(self, job_id: int) -> Job:
        """Queue a failed or cancelled job again."""
        return self.backend.retry(_job_id(job_id), now=self.clock.now(), by=whoami())

    def workers(
        self, *, include_stopped: bool = False, limit: int | None = 100
    ) -> list[WorkerRecord]:
        return self.backend.list_workers(include_stopped=include_stopped, limit=_limit(limit))

    def scale_worker(self, name: str, processes: int) -> int:
        """Ask the running worker(s) named ``name`` to run ``processes`` child processes
        (on any host: the request goes through the database, and they apply it within
        a second; shrinking lets running jobs finish). Returns how many workers were
        asked; 0 if none of that name is running."""
        from .worker.config import MAX_PROCESSES

        if isinstance(processes, bool) or not isinstance(processes, int):
            raise InvalidArguments(f"processes must be an integer, got {processes!r}")
        if not 1 <= processes <= MAX_PROCESSES:
            raise InvalidArguments(f"processes must be from 1 to {MAX_PROCESSES}, got {processes}")
        return self.backend.request_processes(name, processes, now=self.clock.now())

    def pause_queue(self, name: str) -> None:
        """Stop every worker claiming from queue ``name`` (within a second; the jobs
        running finish). Recorded with who asked; :meth:`resume_queue` undoes it."""
        validate_name(name, "queue name")
        self.backend.set_queue_paused(name, True, by=whoami(), now=self.clock.now())

    def resume_queue(self, name: str) -> None:
        """Let workers claim from queue ``name`` again."""
        validate_name(name, "queue name")
        self.backend.set_queue_paused(name, False, by=whoami(), now=self.clock.now())

    def queues(self) -> list[QueueState]:
        """Every queue with active jobs or a pause record: paused or not (by whom, when),
        jobs queued, and jobs reserved or running."""
        return self.backend.list_queues()

    def stats(self, window: timedelta = timedelta(hours=1)) -> list[TaskStats]:
        """Per-task statistics over the last ``window``."""
        if not isinstance(window, timedelta) or window <= timedelta(0):
            raise InvalidArguments(f"window must be a timedelta longer than zero, got {window!r}")
        now = self.clock.now()
        return self.backend.task_stats(since=now - window, now=now)

    def activity(self, window: timedelta = timedelta(hours=1), buckets: int = 60) -> Activity:
        """How many jobs ended, by status, in each of ``buckets`` equal stretches of the
        last ``window`` (oldest first), in all and per task (one read)."""
        if not isinstance(window, timedelta) or window <= timedelta(0):
            raise InvalidArguments(f"window must be a timedelta longer than zero, got {window!r}")
        if not isinstance(buckets, int) or not 1 <= buckets <= 1000:
            raise InvalidArguments(
                f"buckets must be a whole number from 1 to 1000, got {buckets!r}"
            )
        now = self.clock.now()
        bucket = window / buckets
        since = now - window
        found = self.backend.ended_counts(
            since=since, now=now, bucket_seconds=bucket.total_seconds()
        )
        ended: list[dict[str, int]] = [{} for _ in range(buckets)]
        by_task: dict[str, list[dict[str, int]]] = {}
        for slot, task, status, count in found:
            index = min(max(slot, 0), buckets - 1)  # (rounding at the edges)
            own = by_task.setdefault(task, [{} for _ in range(buckets)])[index]
            for counts in (ended[index], own):
                counts[status] = counts.get(status, 0) + count
        return Activity(since=since, bucket=bucket, ended=ended, by_task=by_task)

    # -- micro tasks ----------------------------------------------------------------

    def map(
        self,
        func: Callable[..., Any],
        items: Iterable[Any],
        *,
        processes: int | None = None,
        ordered: bool = True,
        timeout: float | None = None,
        retries: int = 0,
        state: str | os.PathLike[str] | None = None,
    ) -> Iterator[ItemResult]:
        """Run ``func`` over ``items`` in forked processes; yield each item's outcome.

        No database server is involved: the run keeps its state in a SQLite file
        (``state``; a temporary one by default). Run it again with the same ``state``
        after an interruption and it carries on: finished items are not redone. An item
        that fails does not stop the run: its :class:`~tasktrail.mapping.ItemResult` has
        the error. A dict item is called with keyword arguments, a list or tuple with
        positional ones, anything else as the one argument. Results come in input order
        unless ``ordered=False`` (then as they finish).
        """
        from .mapping import MapRun
        from .worker.config import WorkerConfig

        if isinstance(func, Task):
            func = func.func  # a registered task maps as its function
        if not isinstance(items, Iterable):
            raise InvalidArguments(f"map takes an iterable of items, got {type(items).__name__}")
        if processes is not None:
            WorkerConfig(processes=processes)  # refuses 0, which MapRun reads as "CPU count"
        if state is not None and not isinstance(state, str | os.PathLike):
            raise InvalidArguments(f"state must be a file path, got {state!r}")
        items = list(items)
        with MapRun(
            func, processes=processes, timeout=timeout, retries=retries, state=state
        ) as run:
            run.resume()
            total = run.submit(items)
            yield from run.results(total, ordered=ordered)

    # -- running ------------------------------------------------------------------

    def run_worker(self, config: WorkerConfig | None = None, **options: Any) -> int:
        """Run a worker in this process until it is stopped (or idle, with ``burst``).

        Takes a :class:`~tasktrail.worker.WorkerConfig` or its fields as keywords.
        Returns the exit status (0 when stopped cleanly).
        """
        from .worker.supervisor import Supervisor, WorkerConfig

        return Supervisor(self, config or WorkerConfig(**options)).run()
