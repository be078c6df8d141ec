"""worker.protocol: length-prefixed JSON frames."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasktrail.worker.protocol import (
    MAX_MESSAGE,
    FrameReader,
    encode_message,
    recv_message,
    send_message,
)

MESSAGES = [
    {"job": 1, "attempt": 1, "task": "t", "args": [1, "é"], "kwargs": {}, "ref": None},
    {"job": 1, "ok": True, "result": '{"a":1}', "runtime": 0.5},
    {"job": 2, "ok": False, "error": "Boom 🎉", "traceback": "x\n" * 100, "runtime": 1},
]


def test_encode_message_is_length_prefixed_utf8_json() -> None:
    frame = encode_message({"a": "é"})
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4
    assert frame[4:] == '{"a":"é"}'.encode()


def test_whole_frames_in_one_feed() -> None:
    reader = FrameReader()
    assert reader.feed(b"".join(encode_message(m) for m in MESSAGES)) == MESSAGES


def test_byte_by_byte() -> None:
    reader = FrameReader()
    received = []
    for byte in b"".join(encode_message(m) for m in MESSAGES):
        received.extend(reader.feed(bytes([byte])))
    assert received == MESSAGES


def test_partial_header_and_partial_body_wait_for_more() -> None:
    frame = encode_message(MESSAGES[0])
    reader = FrameReader()
    assert reader.feed(frame[:2]) == []
    assert reader.feed(frame[2:10]) == []
    assert reader.feed(frame[10:] + encode_message(MESSAGES[1])[:5]) == [MESSAGES[0]]
    assert reader.feed(encode_message(MESSAGES[1])[5:]) == [MESSAGES[1]]
    assert reader.feed(b"") == []


@given(st.lists(st.integers(min_value=1, max_value=200), max_size=30))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    data = b"".join(encode_message(m) for m in MESSAGES)
    reader = FrameReader()
    received = []
    position = 0
    for cut in cuts:
        received.extend(reader.feed(data[position : position + cut]))
        position += cut
    received.extend(reader.feed(data[position:]))
    assert received == MESSAGES


def test_oversized_frame_is_refused_before_reading_it() -> None:
    reader = FrameReader()
    with pytest.raises(ValueError, match="over the"):
        reader.feed(struct.pack(">I", MAX_MESSAGE + 1))


def test_empty_object_frame() -> None:
    assert FrameReader().feed(encode_message({})) == [{}]


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_send_and_recv_over_a_socket(socket_pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = socket_pair
    for message in MESSAGES:
        send_message(left, message)
    assert [recv_message(right) for _ in MESSAGES] == MESSAGES


def test_recv_returns_none_when_the_peer_closes(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = socket_pair
    left.close()
    assert recv_message(right) is None


def test_recv_returns_none_when_the_peer_closes_mid_frame(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = socket_pair
    left.sendall(encode_message(MESSAGES[0])[:7])
    left.close()
    assert recv_message(right) is None


def test_recv_refuses_an_oversized_frame(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = socket_pair
    left.sendall(struct.pack(">I", MAX_MESSAGE + 1))
    with pytest.raises(ValueError, match="over the"):
        recv_message(right)
