"""A worker host that can be cut off from the network: a namespace, a veth pair and a
TCP forwarder.

The worker runs in its own network namespace, joined to the host by a veth pair
(``10.210.<n>.1`` on the host side, ``10.210.<n>.2`` inside). It reaches PostgreSQL
through a small TCP forwarder the harness runs in the host namespace, listening on the
host side of the veth and connecting to ``127.0.0.1:<chaos port>``, so PostgreSQL's
configuration stays untouched. Taking the host side of the link down cuts the worker
off: its packets are dropped, without a reset, as on a real partition.

Run ``python -m tests.chaos.netns LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT`` to
start the forwarder alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

__all__ = ["Namespace", "missing_tools"]


def missing_tools() -> list[str]:
    """What this machine lacks to make network namespaces (empty: nothing)."""
    if shutil.which("ip") is None:
        return ["ip (iproute2)"]
    if os.geteuid() != 0:
        return ["root (ip netns needs it)"]
    return []


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Namespace:
    """One namespace with its veth pair and forwarder; everything undone by ``close``."""

    def __init__(self, target_port: int) -> None:
        tag = os.getpid() % 100_000
        self.name = f"chaos{tag}"
        self.host_if = f"tcv{tag}h"
        self.inner_if = f"tcv{tag}n"
        subnet = 10 + os.getpid() % 240
        self.host_addr = f"10.210.{subnet}.1"
        self.inner_addr = f"10.210.{subnet}.2"
        self.target_port = target_port
        self.listen_port = 0
        self._forwarder: subprocess.Popen[bytes] | None = None
        self._made: list[str] = []

    def create(self, log_path: str) -> None:
        self.close()  # a namespace of the same name left by a killed run of this pid
        _ip("netns", "add", self.name)
        self._made.append("netns")
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.inner_if)
        self._made.append("veth")
        _ip("link", "set", self.inner_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_addr}/24", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        inside = ("netns", "exec", self.name, "ip")
        _ip(*inside, "addr", "add", f"{self.inner_addr}/24", "dev", self.inner_if)
        _ip(*inside, "link", "set", self.inner_if, "up")
        _ip(*inside, "link", "set", "lo", "up")
        with socket.socket() as probe:
            probe.bind((self.host_addr, 0))
            self.listen_port = int(probe.getsockname()[1])
        with open(log_path, "ab") as log:
            self._forwarder = subprocess.Popen(
                [
                    sys.executable, "-m", "tests.chaos.netns", self.host_addr,
                    str(self.listen_port), "127.0.0.1", str(self.target_port),
                ],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:  # the forwarder listens once a connection to it succeeds
            try:
                with socket.create_connection((self.host_addr, self.listen_port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self._forwarder.poll() is not None:
                    raise RuntimeError("the chaos TCP forwarder did not start") from None
                time.sleep(0.05)

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def link(self, up: bool) -> None:
        _ip("link", "set", self.host_if, "up" if up else "down")

    def close(self) -> None:
        if self._forwarder is not None:
            self._forwarder.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._forwarder.wait(10)
            self._forwarder = None
        _ip("link", "del", self.host_if, check=False)  # takes its peer along
        _ip("netns", "del", self.name, check=False)
        self._made.clear()


# -- the forwarder --------------------------------------------------------------------


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(1 << 16)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        # Whichever side ends, the other learns of it, as it would from a real server.
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _serve(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=5)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
    _pump(upstream, client)
    client.close()
    upstream.close()


def forward(listen: tuple[str, int], target: tuple[str, int]) -> None:
    """Accept connections on ``listen`` and relay each to ``target``, until killed."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(128)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve, args=(client, target), daemon=True).start()


if __name__ == "__main__":
    host, port, target_host, target_port = sys.argv[1:5]
    forward((host, int(port)), (target_host, int(target_port)))
