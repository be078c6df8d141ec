"""``--metrics-port``: the option's validation, the tally, and the supervisor's small HTTP
server driven by hand (no database, no fork: the children are socket pairs, the
supervisor is the few attributes the server reads, and the test turns the loop).
"""

from __future__ import annotations

import re
import selectors
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

import tasktrail
from tasktrail.cli import cli
from tasktrail.clock import utcnow
from tasktrail.errors import ConfigurationError
from tasktrail.job import HeldJob, Outcome
from tasktrail.worker.config import WorkerConfig
from tasktrail.worker.pool import Assignment, Child, ChildPool
from tasktrail.worker.tally import EXCHANGE_BUCKETS, Tally

# -- the option -----------------------------------------------------------------------


@pytest.mark.parametrize("port", [-1, 65536, 10**6, True, "9100", 9100.0, None])
def test_metrics_port_must_be_a_tcp_port(port: Any) -> None:
    if port is None:
        assert WorkerConfig(processes=1).metrics_port is None  # the default: no metrics
        return
    with pytest.raises(ConfigurationError, match="metrics_port must be a TCP port from 1 to 65535"):
        WorkerConfig(processes=1, metrics_port=port)


@pytest.mark.parametrize("port", [0, 1, 9100, 65535])
def test_metrics_ports_accepted(port: int) -> None:
    config = WorkerConfig(processes=1, metrics_port=port)
    assert (config.metrics_port, config.metrics_host) == (port, "127.0.0.1")


@pytest.mark.parametrize("host", ["", "a b", "host\n", 127])
def test_metrics_host_must_be_an_address(host: Any) -> None:
    with pytest.raises(ConfigurationError, match="metrics_host must be a host name or IP"):
        WorkerConfig(processes=1, metrics_port=9100, metrics_host=host)


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("--metrics-port", "70000"), 1, "metrics_port must be a TCP port from 1 to 65535"),
        (("--metrics-port", "-5"), 1, "metrics_port must be a TCP port"),
        (("--metrics-port", "http"), 2, "'http' is not a valid integer"),
        (("--metrics-port", "9100", "--metrics-host", ""), 1, "metrics_host must be"),
    ],
)
def test_the_command_refuses_a_bad_port_in_one_line(
    args: tuple[str, ...], status: int, message: str
) -> None:
    # Refused before the app is loaded or the database opened: none is given.
    result = CliRunner().invoke(cli, ["worker", *args], catch_exceptions=False)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == status, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines


def test_the_port_can_come_from_the_environment() -> None:
    result = CliRunner().invoke(
        cli, ["worker"], env={"TASKTRAIL_METRICS_PORT": "0x10"}, catch_exceptions=False
    )
    assert result.exit_code == 2 and "'0x10' is not a valid integer" in result.stderr


# -- the tally --------------------------------------------------------------------------


def test_an_exchange_lands_in_the_first_bucket_that_holds_it() -> None:
    tally = Tally()
    tally.exchanged(EXCHANGE_BUCKETS[0], claimed=3)  # on a bound: that bucket (le)
    tally.exchanged(EXCHANGE_BUCKETS[0] * 1.01, claimed=0)
    tally.exchanged(3600.0, claimed=1)  # past them all
    assert tally.exchange_buckets[:2] == [1, 1]
    assert tally.exchange_buckets[-1] == 1
    assert sum(tally.exchange_buckets) == tally.exchanges == 3
    assert tally.claimed == 4
    assert tally.exchange_seconds == pytest.approx(3600.0 + EXCHANGE_BUCKETS[0] * 2.01)


# -- the server, turned by hand (it needs prometheus_client) -------------------------------


def held(job_id: int) -> HeldJob:
    return HeldJob(
        id=job_id, task="noop", queue="default", status="running", ref=None, priority=0,
        args_json="[]", kwargs_json="{}", attempts=1, max_attempts=1, timeout=None,
        worker_id=1,
    )  # fmt: skip


class Loop:
    """The supervisor's side: its selector, pool, flow and the metrics server."""

    def __init__(self) -> None:
        from tasktrail.worker.metrics import MetricsServer

        self.selector = selectors.DefaultSelector()
        self.pool = ChildPool(tasktrail.App("sqlite:///:memory:"), self.selector, None)
        self.flow = SimpleNamespace(pending=[], reserve_limit=8)
        self.ends: list[socket.socket] = []
        for pid in (101, 102):
            ours, theirs = socket.socketpair()
            self.ends += [ours, theirs]
            self.pool.children[pid] = Child(pid=pid, sock=ours)
        supervisor = SimpleNamespace(pool=self.pool, flow=self.flow, name="w1")
        self.server = MetricsServer(supervisor, "127.0.0.1", 0)  # type: ignore[arg-type]
        self.server.serve(self.selector)

    def turn(self) -> None:
        for key, _ in self.selector.select(0.01):
            assert key.data == "metrics"
            self.server.ready(key.fileobj)

    def connect(self) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", self.server.port))
        client.setblocking(False)
        return client

    def ask(self, *pieces: bytes, client: socket.socket | None = None) -> tuple[str, bytes]:
        """Send ``pieces`` one loop turn apart; the status line and body of the answer."""
        client = client or self.connect()
        received = bytearray()
        deadline = time.monotonic() + 10
        with client:
            for piece in pieces:
                client.sendall(piece)
                self.turn()
            while time.monotonic() < deadline:
                self.turn()
                try:
                    data = client.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    head, _, body = bytes(received).partition(b"\r\n\r\n")
                    return head.decode().splitlines()[0], body
                received += data
        raise AssertionError(f"no whole answer within 10s: {bytes(received)!r}")

    def close(self) -> None:
        self.server.close()
        for end in self.ends:
            end.close()
        self.selector.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    pytest.importorskip("prometheus_client")
    loop = Loop()
    try:
        yield loop
    finally:
        loop.close()


def sample(body: bytes, name: str, **labels: str) -> float:
    wanted = {"host": socket.gethostname(), "worker": "w1", **labels}
    inside = ",".join(f'{key}="{value}"' for key, value in sorted(wanted.items()))
    found = re.search(rf"^{re.escape(f'{name}{{{inside}}}')} (\S+)$", body.decode(), re.M)
    assert found, f"no {name}{{{inside}}} in\n{body.decode()}"
    return float(found.group(1))


def test_a_scrape_reads_the_supervisors_state(loop: Loop) -> None:
    first, second = loop.pool.children.values()
    # the first child runs one job and has one queued behind it; one job is planned
    # for the second (claimed for it, still in the supervisor)
    first.inflight.extend([Assignment(held(1), started=1.0), Assignment(held(2))])
    second.inflight.append(Assignment(held(3), sent=False))
    loop.flow.pending.append((1, Outcome(4, 1, "succeeded", utcnow())))
    tally = loop.pool.tally
    tally.started, tally.finished["failed"] = 5, 2
    tally.exchanged(0.002, claimed=6)
    tally.exchanged(0.03, claimed=0)

    # the request arrives in pieces, each in a turn of the loop of its own
    status, body = loop.ask(b"GET /metr", b"ics?x=1 HTTP/1.1\r\nHost: x\r\n", b"\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert sample(body, "tasktrail_worker_jobs_running") == 1
    assert sample(body, "tasktrail_worker_jobs_buffered") == 2
    assert sample(body, "tasktrail_worker_outcomes_pending") == 1
    assert sample(body, "tasktrail_worker_child_processes") == 2
    assert sample(body, "tasktrail_worker_reserve_limit") == 8
    assert sample(body, "tasktrail_worker_jobs_claimed_total") == 6
    assert sample(body, "tasktrail_worker_jobs_started_total") == 5
    assert sample(body, "tasktrail_worker_jobs_finished_total", outcome="failed") == 2
    assert sample(body, "tasktrail_worker_jobs_finished_total", outcome="succeeded") == 0
    assert sample(body, "tasktrail_worker_exchanges_total") == 2
    histogram = "tasktrail_worker_exchange_duration_seconds"
    assert sample(body, f"{histogram}_bucket", le="0.001") == 0
    assert sample(body, f"{histogram}_bucket", le="0.0025") == 1
    assert sample(body, f"{histogram}_bucket", le="0.05") == 2
    assert sample(body, f"{histogram}_bucket", le="+Inf") == 2
    assert sample(body, f"{histogram}_sum") == pytest.approx(0.032)
    assert sample(body, "tasktrail_worker_database_errors_total") == 0


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
        (b"hello\n\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 9000, "HTTP/1.1 431 "),
    ],
    ids=["path", "method", "garbage", "too-long"],
)
def test_anything_else_is_refused(loop: Loop, request_bytes: bytes, status: str) -> None:
    answer, _ = loop.ask(request_bytes)
    assert answer.startswith(status)
    assert loop.ask(b"GET /metrics HTTP/1.1\r\n\r\n")[0] == "HTTP/1.1 200 OK"  # still serving


def test_an_idle_client_holds_up_neither_the_loop_nor_the_next_scrape(loop: Loop) -> None:
    idle = loop.connect()
    with idle:
        loop.turn()  # accepted; it sends nothing
        started = time.monotonic()
        assert loop.ask(b"GET /metrics HTTP/1.1\r\n\r\n")[0] == "HTTP/1.1 200 OK"
        assert time.monotonic() - started < 5


def test_a_broken_collector_answers_500_and_the_loop_goes_on(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    del loop.flow.reserve_limit
    assert loop.ask(b"GET /metrics HTTP/1.1\r\n\r\n")[0] == "HTTP/1.1 500 Internal Server Error"
    assert "could not render the metrics" in caplog.text
    loop.flow.reserve_limit = 8
    assert loop.ask(b"GET /metrics HTTP/1.1\r\n\r\n")[0] == "HTTP/1.1 200 OK"


def test_closing_the_server_frees_its_port(loop: Loop) -> None:
    port = loop.server.port
    loop.server.close()
    assert not loop.selector.get_map()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
