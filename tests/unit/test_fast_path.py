"""
The keepalive Ping's write path past Twisted's buffer: order on the wire is
kept whatever the kernel accepts.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport

from twisted_keepalive._mixin import _direct_socket, _send_past_buffer


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
    _send_past_buffer(transport, sock, b"\x89\x04ping")
    assert sock.sent == b"\x89\x04ping"
    assert transport.value() == b""


def test_what_the_kernel_does_not_take_is_written_through_the_transport() -> None:
    transport, sock = StringTransport(), _Socket(3)
    _send_past_buffer(transport, sock, b"\x89\x04ping")
    assert sock.sent + transport.value() == b"\x89\x04ping"


def test_a_full_or_failing_socket_leaves_the_frame_to_twisted() -> None:
    for error in (BlockingIOError(), BrokenPipeError()):
        transport, sock = StringTransport(), _Socket(error)
        _send_past_buffer(transport, sock, b"\x89\x04ping")
        assert transport.value() == b"\x89\x04ping"


def test_only_plain_tcp_transports_are_written_past_the_buffer() -> None:
    assert _direct_socket(StringTransport()) is None
