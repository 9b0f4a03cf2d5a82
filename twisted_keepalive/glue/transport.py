"""
What the adapters need of a Twisted TCP transport that Twisted has no public
word for: how much of our data is still waiting (in Twisted's buffer and the
kernel's), and a way to write one tiny frame without the buffer's two extra
system calls.

Each private attribute of Twisted is read in exactly one small function here,
and ``tests/unit/test_transport_probes.py`` fails when one disappears.
Everything degrades to "cannot tell" (``None``) on transports that do not
have them: TLS, unix sockets, test transports, other platforms.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from twisted.internet import tcp

try:  # Linux and most Unixes; not Windows.
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
    _FIONREAD: int | None = termios.FIONREAD
except (ImportError, AttributeError):  # pragma: no cover - platform dependent
    _TIOCOUTQ = _FIONREAD = None

#: The attributes of ``twisted.internet.tcp.Connection`` this module reads.
TWISTED_BUFFER_ATTRIBUTES = ("socket", "dataBuffer", "offset", "_tempDataLen", "TLS", "connected")


def ping_head(length: int, masked: bool) -> bytes:
    """FIN + Ping, then the payload length (at most 125) with the mask bit."""
    if length == 4:
        return _KEEPALIVE_HEADS[masked]
    return bytes((0x89, (0x80 if masked else 0) | length))


# The keepalive Ping's two heads, shared by every connection.
_KEEPALIVE_HEADS = {False: b"\x89\x04", True: b"\x89\x84"}


def ping_frame(head: bytes, payload: bytes, masked: bool) -> bytes:
    """
    A ready-made Ping frame: ``head`` (:func:`ping_head`) and ``payload``,
    masked for a client as RFC 6455 5.3 requires: with a key from the
    operating system's strong source of entropy, so that no attacker can
    predict it.
    """
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + xor_mask(key, payload)


def xor_mask(key: bytes, data: bytes) -> bytes:
    """``data`` masked (or unmasked) with the 4-byte ``key``, as RFC 6455 5.3 says."""
    length = len(data)
    keys = (key * (length // 4 + 1))[:length]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keys, "big")).to_bytes(length, "big")


def direct_socket(transport: Any) -> Any:
    """
    The socket of a plain Twisted TCP transport whose write buffer this module
    knows how to read, else ``None`` (then Pings go through ``write()``).
    """
    if not isinstance(transport, tcp.Connection):
        return None
    for name in TWISTED_BUFFER_ATTRIBUTES:
        if not hasattr(transport, name):
            return None
    return transport.socket


def buffer_is_empty(transport: Any) -> bool:
    """Whether Twisted holds nothing of ours unsent and the connection is up."""
    return (
        not transport.TLS
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
        and transport.connected
        and not transport.disconnecting
    )


def send_past_buffer(transport: Any, sock: Any, frame: bytes) -> None:
    """
    Write ``frame`` to the socket now, past Twisted's empty write buffer.

    ``transport.write()`` would buffer it, register the socket for writing
    with epoll, send it on the next reactor turn and unregister: two system
    calls more than the send itself, about a third of a Ping's cost.  Only
    called while Twisted's buffer is empty (:func:`buffer_is_empty`), so the
    order on the wire holds; whatever the kernel does not take goes through
    ``transport.write()``.
    """
    try:
        sent = sock.send(frame)
    except OSError:
        # Full (BlockingIOError) or failing: let Twisted meet the error on its
        # own write and close as it does.
        sent = 0
    if sent < len(frame):
        transport.write(frame[sent:])


def transport_backlog(transport: Any) -> int | None:
    """
    Bytes written to a Twisted TCP transport that it has not yet handed to
    the kernel, or ``None`` when the transport does not say (TLS, unix, a
    future Twisted).
    """
    temp = getattr(transport, "_tempDataLen", None)
    buffer = getattr(transport, "dataBuffer", None)
    offset = getattr(transport, "offset", None)
    if temp is None or buffer is None or offset is None:
        return None
    try:
        return len(buffer) - offset + temp  # type: ignore[no-any-return]
    except TypeError:
        return None


def kernel_unsent(transport: Any) -> int | None:
    """Bytes in the kernel's send queue of the transport's socket, or ``None``."""
    return _socket_count(transport, _TIOCOUTQ)


def _socket_count(transport: Any, request: int | None) -> int | None:
    """A byte count the kernel keeps for the transport's socket, or ``None``."""
    if request is None:
        return None
    try:
        fileno = transport.getHandle().fileno()
        answer = fcntl.ioctl(fileno, request, b"\0\0\0\0")
    except Exception:
        return None
    return struct.unpack("i", answer)[0]  # type: ignore[no-any-return]


def unsent(transport: Any) -> int | None:
    """
    Bytes we wrote that the peer has not acknowledged yet: Twisted's write
    buffer plus the kernel's send queue, or ``None`` when neither can be read.
    """
    backlog = transport_backlog(transport)
    kernel = kernel_unsent(transport)
    if backlog is None and kernel is None:
        return None
    return (backlog or 0) + (kernel or 0)


def kernel_unread(transport: Any) -> int | None:
    """
    Bytes from the peer waiting in the kernel's receive queue of the
    transport's socket (read through the public ``getHandle()``), or ``None``.
    """
    return _socket_count(transport, _FIONREAD)
