"""
The adapter's probes of Twisted's TCP transport: the keepalive Ping's write
path past Twisted's buffer keeps the order on the wire whatever the kernel
accepts, and every private Twisted attribute they read is still there.
"""

from __future__ import annotations

import socket

from twisted.internet import tcp
from twisted.internet.testing import StringTransport

from twisted_keepalive.glue.transport import (
    TWISTED_BUFFER_ATTRIBUTES,
    buffer_is_empty,
    direct_socket,
    kernel_unread,
    kernel_unsent,
    ping_frame,
    send_past_buffer,
    transport_backlog,
    unsent,
)


class _Socket:
    def __init__(self, accepts: int | Exception) -> None:
        self.accepts = accepts
        self.sent = b""

    def send(self, data: bytes) -> int:
        if isinstance(self.accepts, Exception):
            raise self.accepts
        taken = data[: self.accepts]
        self.sent += taken
        return len(taken)


def test_frame_goes_straight_to_the_socket_when_it_takes_it_all() -> None:
    transport, sock = StringTransport(), _Socket(100)
    send_past_buffer(transport, sock, b"\x89\x04ping")
    assert sock.sent == b"\x89\x04ping"
    assert transport.value() == b""


def test_what_the_kernel_does_not_take_is_written_through_the_transport() -> None:
    transport, sock = StringTransport(), _Socket(3)
    send_past_buffer(transport, sock, b"\x89\x04ping")
    assert sock.sent + transport.value() == b"\x89\x04ping"


def test_a_full_or_failing_socket_leaves_the_frame_to_twisted() -> None:
    for error in (BlockingIOError(), BrokenPipeError()):
        transport, sock = StringTransport(), _Socket(error)
        send_past_buffer(transport, sock, b"\x89\x04ping")
        assert transport.value() == b"\x89\x04ping"


def test_only_plain_tcp_transports_are_written_past_the_buffer() -> None:
    assert direct_socket(StringTransport()) is None


def _real_connection() -> tuple[tcp.Connection, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    return tcp.Connection(ours, None), theirs


def test_twisted_tcp_transports_still_have_the_buffer_attributes_read_here() -> None:
    # Fails when a Twisted release renames what the probes read: then the
    # probes would quietly say "cannot tell" and the fast path would go.
    connection, theirs = _real_connection()
    try:
        missing = [n for n in TWISTED_BUFFER_ATTRIBUTES if not hasattr(connection, n)]
        assert missing == []
        assert direct_socket(connection) is connection.socket
        assert transport_backlog(connection) == 0
        assert not buffer_is_empty(connection)  # not connected yet
        connection.connected = 1
        assert buffer_is_empty(connection)
    finally:
        connection.socket.close()
        theirs.close()


def test_kernel_send_queue_is_read_from_a_real_socket() -> None:
    connection, theirs = _real_connection()
    try:
        assert kernel_unsent(connection) == 0
        connection.socket.send(b"x" * 1000)
        queued = unsent(connection)
        # A socketpair hands bytes over at once; what matters is a number.
        assert queued is not None and queued >= 0
    finally:
        connection.socket.close()
        theirs.close()


def test_kernel_receive_queue_is_read_from_a_real_socket() -> None:
    connection, theirs = _real_connection()
    try:
        assert kernel_unread(connection) == 0
        theirs.sendall(b"x" * 1000)
        assert kernel_unread(connection) == 1000  # a socketpair delivers at once
    finally:
        connection.socket.close()
        theirs.close()


def test_probes_say_cannot_tell_for_other_transports() -> None:
    assert transport_backlog(StringTransport()) is None
    assert unsent(StringTransport()) is None
    assert kernel_unread(StringTransport()) is None


def test_client_ping_frames_are_masked_with_fresh_keys() -> None:
    payload = b"\x00\x00\x00\x07"
    frames = {ping_frame(b"\x89\x84", payload, True) for _ in range(50)}
    assert len(frames) > 45
    for frame in frames:
        key, masked = frame[2:6], frame[6:]
        assert bytes(m ^ key[i] for i, m in enumerate(masked)) == payload
    assert ping_frame(b"\x89\x04", payload, False) == b"\x89\x04" + payload
