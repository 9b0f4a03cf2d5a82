"""
One connection under test on either framing -- Autobahn's (a KeepaliveMixin
protocol) or Twisted's own (``with_keepalive`` around a plain
``twisted.web.websocket`` protocol, behind a real ``Site`` and
``WebSocketResource`` or a real ``WebSocketClientEndpoint``) -- on a
``StringTransport``, driven by a ``task.Clock``.  The tests that use it assert
what both framings promise: frames on the wire, Deferreds, hooks, timers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.server import Site

from twisted_keepalive import KeepaliveMixin, Timeout, collect_stats

from .wire import (
    _GUID,
    _AbortingTransport,
    frame,
    open_client,
    open_server,
    parse_frames,
    upgrade,
)

try:
    from twisted.web.websocket import WebSocketClientEndpoint, WebSocketResource

    from twisted_keepalive.web import with_keepalive
except ImportError:
    #: Twisted before 25.5 (the support matrix's oldest cells): Autobahn only.
    WEB_FRAMING = False
else:
    WEB_FRAMING = True

#: Why the tests on Twisted's framing do not run, where they do not.
NO_WEB_FRAMING = (
    "twisted.web.websocket needs Twisted 25.5 or later and wsproto; with this "
    "Twisted only the Autobahn framing is tested"
)


FRAMINGS = ("autobahn", "twisted")

#: Tight timings for tests; the first Ping exactly one interval in.
TEST_SETTINGS: dict[str, Any] = {
    "ping_interval": 1.0,
    "ping_timeout": 0.5,
    "close_timeout": 2.0,
    "first_ping_spread": 0.0,
}


@dataclass
class Events:
    """What the application's protocol saw, on either framing."""

    opened: int = 0
    messages: list[bytes | str] = field(default_factory=list)
    pongs: list[bytes] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    timeouts: list[Timeout] = field(default_factory=list)
    lost: list[Any] = field(default_factory=list)
    #: Called in the application's open hook with the keepalive handle.
    on_open: Callable[[Any], object] | None = None
    #: Called in ``negotiationStarted`` (Twisted's framing) with the transport.
    on_start: Callable[[Any], object] | None = None
    #: The application's timeout hook raises (after recording the Timeout).
    timeout_hook_raises: bool = False

    def timed_out(self, timeout: Timeout) -> None:
        self.timeouts.append(timeout)
        if self.timeout_hook_raises:
            raise RuntimeError("the application's timeout hook failed")


#: The application's timeout hook on each framing, as its log events name it.
TIMEOUT_HOOK = {"autobahn": "onKeepaliveTimeout", "twisted": "keepaliveTimedOut"}


@dataclass
class Peer:
    """
    The far end of one connection: what our side wrote (``frames()``), and
    frames fed to our side (``receive``).  ``keepalive`` is what has
    ``latency``, ``ping()`` and ``keepalive_timeout`` on this framing: the
    protocol on Autobahn, the transport on Twisted's.
    """

    framing: str
    keepalive: Any
    transport: _AbortingTransport
    clock: Clock
    events: Events
    deliver: Callable[[bytes], None]
    #: Whether frames *to* our side are masked (we are the server).
    masks: bool
    close_ours: Callable[[int], None]
    lose_with: Callable[[Failure], None]
    #: Sends a bytes message from our side, as the application would.
    send_ours: Callable[[bytes], None]
    #: The application's protocol object (what log events name).
    application: Any
    stats: Any = None
    seen: list[tuple[int, bytes]] = field(default_factory=list)

    def frames(self) -> list[tuple[int, bytes]]:
        new = parse_frames(self.transport.value())
        self.transport.clear()
        self.seen.extend(new)
        return new

    def pings(self) -> list[bytes]:
        return [payload for opcode, payload in self.frames() if opcode == 0x9]

    def receive(self, opcode: int, payload: bytes = b"") -> None:
        self.deliver(frame(opcode, payload, masked=self.masks))

    def pong(self, payload: bytes) -> None:
        self.receive(0xA, payload)

    def lose(self, reason: type[Exception] = ConnectionDone) -> None:
        self.transport.connected = False
        self.lose_with(Failure(reason()))


def open_peer(
    framing: str,
    side: str = "server",
    clock: Clock | None = None,
    *,
    stats: bool = False,
    events: Events | None = None,
    **settings: Any,
) -> Peer:
    """Our ``side`` of a connection on ``framing``, past its opening handshake."""
    clock = clock or Clock()
    events = events or Events()
    settings = {**TEST_SETTINGS, **settings}
    if framing == "autobahn":
        return _autobahn(side, clock, events, stats, settings)
    if framing == "twisted":
        return _twisted(side, clock, events, stats, settings)
    raise ValueError(framing)


# -- Autobahn ---------------------------------------------------------------------


def _autobahn(
    side: str, clock: Clock, events: Events, stats: bool, settings: dict[str, Any]
) -> Peer:
    def onOpen(self: Any) -> None:
        events.opened += 1
        if events.on_open is not None:
            events.on_open(self)

    def onMessage(self: Any, payload: bytes, isBinary: bool) -> None:
        events.messages.append(payload if isBinary else payload.decode())

    def onClose(self: Any, wasClean: bool, code: Any, reason: Any) -> None:
        events.lost.append((wasClean, code, reason))

    namespace = {
        "onOpen": onOpen,
        "onMessage": onMessage,
        "onPong": lambda self, payload: events.pongs.append(payload),
        "onLatency": lambda self, latency: events.latencies.append(latency),
        "onKeepaliveTimeout": lambda self, timeout: events.timed_out(timeout),
        "onClose": onClose,
        **settings,
    }
    base = WebSocketServerProtocol if side == "server" else WebSocketClientProtocol
    cls = type("Recorded", (KeepaliveMixin, base), namespace)
    holder: list[Any] = []
    if side == "server":
        setup = (lambda f: holder.append(collect_stats(f))) if stats else None
        # Autobahn's own closing-handshake timer would race our abort.
        wired = open_server(cls, clock, factory_setup=setup, closeHandshakeTimeout=0)
    else:
        wired = open_client(cls, clock, closeHandshakeTimeout=0)
    protocol = wired.protocol
    peer = Peer(
        "autobahn",
        protocol,
        wired.transport,
        clock,
        events,
        protocol.dataReceived,
        masks=side == "server",
        close_ours=lambda code: protocol.sendClose(code),
        lose_with=protocol.connectionLost,
        send_ours=lambda data: protocol.sendMessage(data, isBinary=True),
        application=protocol,
        stats=holder[0] if holder else None,
    )
    return peer


# -- Twisted's own WebSocket API -----------------------------------------------------


class _App:
    """A plain twisted.web.websocket protocol: no base class, no super()."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.transport: Any = None

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport
        if self.events.on_start is not None:
            self.events.on_start(transport)

    def negotiationFinished(self) -> None:
        self.events.opened += 1
        if self.events.on_open is not None:
            self.events.on_open(self.transport)

    def textMessageReceived(self, message: str) -> None:
        self.events.messages.append(message)

    def bytesMessageReceived(self, data: bytes) -> None:
        self.events.messages.append(bytes(data))

    def pongReceived(self, payload: bytes) -> None:
        self.events.pongs.append(payload)

    def latencyMeasured(self, latency: float) -> None:
        self.events.latencies.append(latency)

    def keepaliveTimedOut(self, timeout: Timeout) -> None:
        self.events.timed_out(timeout)

    def connectionLost(self, reason: Failure) -> None:
        self.events.lost.append(reason)


class _AppFactory:
    def __init__(self, events: Events) -> None:
        self.events = events
        self.built: list[_App] = []

    def buildProtocol(self, addr: Any) -> _App:
        app = _App(self.events)
        self.built.append(app)
        return app


class _StringEndpoints:
    """An ``IAgentEndpointFactory`` whose endpoints connect to one StringTransport."""

    def __init__(self, transport: _AbortingTransport) -> None:
        self.transport = transport
        self.protocol: Any = None

    def endpointForURI(self, uri: Any) -> Any:
        return self

    def connect(self, factory: Any) -> Deferred[Any]:
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9000))
        self.protocol.makeConnection(self.transport)
        return succeed(self.protocol)


def wire_twisted(
    factory: Any, side: str
) -> tuple[_AbortingTransport, Callable[[bytes], None], Callable[[Failure], None]]:
    """
    ``factory`` (any ``twisted.web.websocket`` factory) on our ``side`` of a
    connection on a StringTransport, past its opening handshake: behind a
    real ``Site`` and ``WebSocketResource``, or a real
    ``WebSocketClientEndpoint``.  Returns the transport, where the peer's
    bytes go in, and how the connection is lost.
    """
    if side == "server":
        resource = WebSocketResource(factory)
        resource.isLeaf = True
        channel = Site(resource, timeout=None).buildProtocol(None)
        transport = _AbortingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        channel.makeConnection(transport)
        upgrade(channel.dataReceived, transport)
        return transport, channel.dataReceived, channel.connectionLost
    transport = _AbortingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 9000))
    endpoints = _StringEndpoints(transport)
    endpoint = WebSocketClientEndpoint(endpoints, "ws://127.0.0.1:9000/")
    connected = Deferred.fromCoroutine(endpoint.connect(factory))
    request = transport.value()
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    transport.clear()
    wire = endpoints.protocol
    wire.dataReceived(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    assert connected.called
    return transport, wire.dataReceived, wire.connectionLost


def _twisted(
    side: str, clock: Clock, events: Events, stats: bool, settings: dict[str, Any]
) -> Peer:
    apps = _AppFactory(events)
    factory = with_keepalive(apps, clock=clock, **settings)
    collected = collect_stats(factory) if stats else None
    transport, deliver, lose = wire_twisted(factory, side)
    [app] = apps.built
    keepalive = app.transport
    peer = Peer(
        "twisted",
        keepalive,
        transport,
        clock,
        events,
        deliver,
        masks=side == "server",
        close_ours=lambda code: keepalive.loseConnection(code),
        lose_with=lose,
        send_ours=keepalive.sendBytesMessage,
        application=app,
        stats=collected,
    )
    return peer
