"""``tasktrail worker --metrics-port``: the worker's own metrics, in Prometheus text.

Every figure is read from the supervisor's state at each scrape, never from the
database: what its children run and hold now, and what its loop has counted since it
started (:class:`.tally.Tally`).

They are served by the supervisor alone, from its own loop: a listening socket and its
connections, non-blocking, in the supervisor's selector, answered a piece at a time as
each is ready, so a slow client never holds the loop up. Not a server thread
(``prometheus_client.start_http_server``): the supervisor forks while it runs (a process
replaced, added by a scale-up), and a child forked from a process with threads may
inherit a lock another thread held, and deadlock on it. Every descriptor of the server is
closed in the children.

This module is imported only when the option is given; it needs ``prometheus_client``
(the ``dashboard`` extra).
"""

from __future__ import annotations

import contextlib
import http
import itertools
import logging
import selectors
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import ConfigurationError
from ..job import OutcomeKind
from .tally import EXCHANGE_BUCKETS

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["MetricsServer"]

log = logging.getLogger("tasktrail.worker")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Connections open at once; past that, the oldest is closed for a new one.
MAX_CONNECTIONS = 8
#: Seconds a connection may take to send its request and read the answer.
CONNECTION_TIMEOUT = 10.0
#: The most bytes of a request (its line and headers) read before it is refused.
MAX_REQUEST = 8192
LABELS = ["worker", "host"]


class WorkerCollector(Collector):
    """The metrics of one supervisor, read from it at each scrape."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.host = socket.gethostname()

    def collect(self) -> Iterator[Metric]:
        supervisor = self.supervisor
        pool, flow = supervisor.pool, supervisor.flow
        tally = pool.tally
        labels = [supervisor.name, self.host]

        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"tasktrail_worker_{name}", documentation, labels=LABELS)
            family.add_metric(labels, value)
            return family

        def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"tasktrail_worker_{name}", documentation, labels=LABELS)
            family.add_metric(labels, value)
            return family

        running = sum(1 for child in pool.children.values() if child.assignment is not None)
        yield gauge("jobs_running", "Jobs running in its child processes now", running)
        yield gauge(
            "jobs_buffered",
            "Jobs it holds that no child has begun yet (claimed for one, or queued in it)",
            pool.inflight() - running,
        )
        yield gauge(
            "outcomes_pending", "Outcomes not yet recorded in the database", len(flow.pending)
        )
        yield gauge(
            "child_processes", "Child processes alive now (retiring ones too)", len(pool.children)
        )
        yield gauge("reserve_limit", "The most jobs it may hold at once", flow.reserve_limit)
        yield counter("jobs_claimed", "Jobs it took from the database", tally.claimed)
        yield counter("jobs_started", "Jobs its child processes began", tally.started)
        finished = CounterMetricFamily(
            "tasktrail_worker_jobs_finished",
            "Outcomes recorded, by kind (interrupted and deferred give the job back)",
            labels=[*LABELS, "outcome"],
        )
        for kind in get_args(OutcomeKind):
            finished.add_metric([*labels, kind], tally.finished[kind])
        yield finished
        yield counter(
            "exchanges", "Round trips of its hot path the database answered", tally.exchanges
        )
        duration = HistogramMetricFamily(
            "tasktrail_worker_exchange_duration_seconds",
            "How long those round trips took",
            labels=LABELS,
        )
        bounds = [*map(repr, EXCHANGE_BUCKETS), "+Inf"]
        cumulative = itertools.accumulate(tally.exchange_buckets)
        buckets = [(bound, float(count)) for bound, count in zip(bounds, cumulative, strict=True)]
        duration.add_metric(labels, buckets, sum_value=tally.exchange_seconds)
        yield duration
        yield counter(
            "database_errors",
            "Calls to the database that failed (unreachable)",
            tally.database_errors,
        )


@dataclass(eq=False, slots=True)
class _Connection:
    sock: socket.socket
    opened: float  # monotonic
    request: bytearray = field(default_factory=bytearray)
    reply: memoryview | None = None  # what is left to send, once the request is read


class MetricsServer:
    """``GET /metrics`` over HTTP, from the supervisor's loop (see the module docstring).

    Binds at once (a port in use stops the worker before it takes a job); answers once
    :meth:`serve` has put its socket in the supervisor's selector, whose loop passes
    each ready socket registered as ``"metrics"`` to :meth:`ready`. A connection's age is
    counted on ``clock`` (the supervisor's).
    """

    def __init__(
        self, supervisor: Supervisor, host: str, port: int, *, clock: Clock | None = None
    ) -> None:
        self._pool = supervisor.pool
        self._clock = SYSTEM_CLOCK if clock is None else clock
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(WorkerCollector(supervisor))
        try:
            family, _, _, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            self._listener = socket.create_server(address, family=family, backlog=16)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{port} (--metrics-host, --metrics-port): {exc}"
            ) from None
        self._listener.setblocking(False)
        self._pool.close_in_child(self._listener.fileno())
        bound_host, self.port = self._listener.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host  # IPv6
        self.url = f"http://{shown}:{self.port}/metrics"
        self._selector: selectors.BaseSelector | None = None
        self._connections: dict[socket.socket, _Connection] = {}

    def serve(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        selector.register(self._listener, selectors.EVENT_READ, "metrics")

    def ready(self, sock: object) -> None:
        """``sock``, one of the server's, is ready: accept, read or answer."""
        if sock is self._listener:
            self._accept()
        elif isinstance(sock, socket.socket) and (connection := self._connections.get(sock)):
            if connection.reply is None:
                self._read(connection)
            else:
                self._write(connection)

    def close(self) -> None:
        for connection in list(self._connections.values()):
            self._close(connection)
        self._forget(self._listener)

    # -- one connection at a time, a piece at a time ----------------------------------------

    def _accept(self) -> None:
        assert self._selector is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except ConnectionAbortedError:
                continue
            except OSError:  # none left (BlockingIOError), or out of descriptors
                return
            now = self._clock.monotonic()
            for connection in list(self._connections.values()):
                if now - connection.opened > CONNECTION_TIMEOUT:
                    self._close(connection)
            if len(self._connections) >= MAX_CONNECTIONS:
                self._close(next(iter(self._connections.values())))
            sock.setblocking(False)
            self._pool.close_in_child(sock.fileno())
            self._connections[sock] = _Connection(sock, now)
            self._selector.register(sock, selectors.EVENT_READ, "metrics")

    def _read(self, connection: _Connection) -> None:
        try:
            data = connection.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return
        connection.request += data
        head, sep, _ = bytes(connection.request).replace(b"\r\n", b"\n").partition(b"\n\n")
        if sep:
            self._reply(connection, *self._answer(head))
        elif len(connection.request) > MAX_REQUEST:
            self._reply(connection, 431, b"request too long\n")

    def _answer(self, head: bytes) -> tuple[int, bytes]:
        line = head.split(b"\n", 1)[0].decode("latin-1").split()
        if len(line) != 3:
            return 400, b"bad request\n"
        method, target, _ = line
        if target.split("?", 1)[0] != "/metrics":
            return 404, b"not found: the metrics are at /metrics\n"
        if method != "GET":
            return 405, b"only GET\n"
        try:
            return 200, generate_latest(self._registry)
        except Exception:  # a scrape must never stop the worker
            log.exception("could not render the metrics")
            return 500, b"could not render the metrics (see the worker's log)\n"

    def _reply(self, connection: _Connection, status: int, body: bytes) -> None:
        assert self._selector is not None
        content_type = CONTENT_TYPE if status == 200 else "text/plain; charset=utf-8"
        head = (
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n"
        )
        connection.reply = memoryview(head.encode("ascii") + body)
        self._selector.modify(connection.sock, selectors.EVENT_WRITE, "metrics")
        self._write(connection)

    def _write(self, connection: _Connection) -> None:
        assert connection.reply is not None
        try:
            sent = connection.sock.send(connection.reply)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(connection.reply)  # the client is gone
        connection.reply = connection.reply[sent:]
        if not connection.reply:
            self._close(connection)

    def _close(self, connection: _Connection) -> None:
        del self._connections[connection.sock]
        self._forget(connection.sock)

    def _forget(self, sock: socket.socket) -> None:
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
        if sock.fileno() >= 0:
            self._pool.keep_in_child(sock.fileno())  # its number may be reused
        sock.close()
