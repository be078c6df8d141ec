"""Messages between the supervisor and its children.

Each message is one JSON object, framed by a 4-byte big-endian length. JSON, never
pickle: a child only ever learns a task name and JSON arguments, and the supervisor only
ever learns an outcome.

Supervisor to child: ``{"jobs": [job, ...]}``, each job ``{"job": id, "attempt": n,
"task": name, "args": "<json text>", "kwargs": "<json text>", "ref": [type, id] | null}``
(the arguments as the JSON text stored: the child decodes them), or ``{"cancel": id}``.
Child to supervisor, one message per job: ``{"job": id, "ok": true, "result": "<json
text>", "runtime": s}`` or ``{"job": id, "ok": false, "error": "...", "traceback":
"...", "reason": "...", "runtime": s}``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from typing import Any

__all__ = ["FrameReader", "encode_message", "recv_message", "send_message"]

_HEADER = struct.Struct(">I")
MAX_MESSAGE = 64 * 1024 * 1024


def encode_message(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(len(data)) + data


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    """Send one message, blocking until it is written."""
    sock.sendall(encode_message(message))


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket) -> dict[str, Any] | None:
    """Receive one message, blocking; ``None`` when the other side closed the socket."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes is over the {MAX_MESSAGE}-byte limit")
    body = _recv_exactly(sock, size)
    if body is None:
        return None
    message: dict[str, Any] = json.loads(body)
    return message


class FrameReader:
    """Splits bytes read from a non-blocking socket into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        buffer = self._buffer
        buffer += data
        bodies: list[bytes] = []
        position, available = 0, len(buffer)
        while available - position >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, position)
            if size > MAX_MESSAGE:
                raise ValueError(f"message of {size} bytes is over the {MAX_MESSAGE}-byte limit")
            end = position + _HEADER.size + size
            if end > available:
                break
            bodies.append(bytes(buffer[position + _HEADER.size : end]))
            position = end
        del buffer[:position]
        if len(bodies) > 1:
            # Every body is one JSON object: parse them as one array, in one call.
            with contextlib.suppress(ValueError):
                messages: list[dict[str, Any]] = json.loads(b"[" + b",".join(bodies) + b"]")
                return messages
        return [json.loads(body) for body in bodies]  # (raises for the body that is bad)
