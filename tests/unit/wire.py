"""
An in-memory WebSocket peer for deterministic tests: real Autobahn protocols on
a ``StringTransport``, driven by a ``task.Clock``, with frames built and parsed
here by RFC 6455 so that assertions are about bytes on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from twisted_keepalive import KeepaliveMixin

PING, PONG, CLOSE, TEXT = 0x9, 0xA, 0x8, 0x1
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def result_of(deferred: Deferred[Any]) -> Any:
    """What a Deferred that has already fired fired with (a value or a Failure)."""
    box: list[Any] = []
    deferred.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


def frame(opcode: int, payload: bytes = b"", *, masked: bool = True, fin: bool = True) -> bytes:
    """One frame as a client (masked) or a server (unmasked) would send it."""
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length <= 125:
        head += bytes([mask_bit | length])
    elif length <= 0xFFFF:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split a byte stream into ``(opcode, unmasked payload)`` pairs."""
    frames = []
    while data:
        opcode = data[0] & 0x0F
        masked = data[1] & 0x80
        length = data[1] & 0x7F
        pos = 2
        if length == 126:
            (length,) = struct.unpack("!H", data[2:4])
            pos = 4
        elif length == 127:
            (length,) = struct.unpack("!Q", data[2:10])
            pos = 10
        key = b""
        if masked:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + length]
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frames.append((opcode, payload))
        data = data[pos + length :]
    return frames


@dataclass
class Peer:
    """One end of a connection under test and the bytes it has written."""

    protocol: Any
    transport: StringTransport
    clock: Clock
    seen: list[tuple[int, bytes]] = field(default_factory=list)

    def frames(self) -> list[tuple[int, bytes]]:
        """Frames written since the last call (and remembered in ``seen``)."""
        new = parse_frames(self.transport.value())
        self.transport.clear()
        self.seen.extend(new)
        return new

    def pings(self) -> list[bytes]:
        return [payload for opcode, payload in self.frames() if opcode == PING]

    def receive(self, opcode: int, payload: bytes = b"") -> None:
        masked = bool(self.protocol.factory.isServer)
        self.protocol.dataReceived(frame(opcode, payload, masked=masked))

    def pong(self, payload: bytes) -> None:
        self.receive(PONG, payload)

    def lose(self, reason: type[Exception] = ConnectionDone) -> None:
        self.transport.connected = False
        self.protocol.connectionLost(Failure(reason()))


class _AbortingTransport(StringTransport):
    """A ``StringTransport`` that records an abort the way a socket would."""

    aborted = False
    #: Bytes written to it so far, whatever was cleared since.
    written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def unregisterProducer(self) -> None:
        # Autobahn unregisters unconditionally when it drops a connection.
        self.producer = None

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


def open_server(
    protocol_class: type[WebSocketServerProtocol],
    clock: Clock | None = None,
    *,
    factory_setup: Any = None,
    **protocol_options: Any,
) -> Peer:
    """A server protocol past its opening handshake, on the given clock."""
    clock = clock or Clock()
    factory = WebSocketServerFactory("ws://127.0.0.1:9000")
    factory.protocol = protocol_class
    # Autobahn's own handshake timers run on the global reactor; keep them out
    # of the way so only the mixin's timers (on ``clock``) matter.
    factory.setProtocolOptions(openHandshakeTimeout=0, **protocol_options)
    if factory_setup is not None:
        factory_setup(factory)
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.clock = clock
    transport = _AbortingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(transport)
    upgrade(protocol.dataReceived, transport)
    return Peer(protocol, transport, clock)


def upgrade(deliver: Any, transport: StringTransport) -> None:
    """
    Send a client's opening handshake through ``deliver``, check the 101
    response, and keep only what the server wrote after it (in its open hook).
    """
    key = base64.b64encode(os.urandom(16))
    deliver(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    response, _, frames_after = transport.value().partition(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101"), response
    transport.clear()
    transport.io.write(frames_after)


def open_client(
    protocol_class: type[WebSocketClientProtocol],
    clock: Clock | None = None,
    **protocol_options: Any,
) -> Peer:
    """A client protocol past its opening handshake, on the given clock."""
    clock = clock or Clock()
    factory = WebSocketClientFactory("ws://127.0.0.1:9000")
    factory.protocol = protocol_class
    factory.setProtocolOptions(openHandshakeTimeout=0, **protocol_options)
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9000))
    protocol.clock = clock
    transport = _AbortingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 9000))
    protocol.makeConnection(transport)
    request = transport.value()
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    transport.clear()
    protocol.dataReceived(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    return Peer(protocol, transport, clock)


class EchoServer(KeepaliveMixin, WebSocketServerProtocol):
    """The mixin on a server protocol, with tight timings for tests."""

    ping_interval = 1.0
    ping_timeout = 0.5
    close_timeout = 2.0
    first_ping_spread = 0.0


class EchoClient(KeepaliveMixin, WebSocketClientProtocol):
    """The mixin on a client protocol, with tight timings for tests."""

    ping_interval = 1.0
    ping_timeout = 0.5
    close_timeout = 2.0
    first_ping_spread = 0.0


__all__ = [
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "ConnectionAborted",
    "EchoClient",
    "EchoServer",
    "Peer",
    "frame",
    "open_client",
    "open_server",
    "parse_frames",
]
