"""
Real peers for tests that run the Twisted reactor: third-party WebSocket
implementations (``websockets``, Node's ``ws``) run as child processes through
``tests/peers/``, and our own keepalive protocols on real loopback sockets.

Each peer prints one JSON object per line; :class:`PeerProcess` turns those
lines into events the test can wait for with Deferreds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import defer, protocol, reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial import unittest

from twisted_keepalive import KeepaliveMixin

PEERS = Path(__file__).parent / "peers"
NODE = shutil.which("node")
NODE_PEERS_READY = NODE is not None and (PEERS / "node_modules" / "ws").is_dir()
NODE_MISSING = "Node.js or tests/peers/node_modules/ws is missing: run `npm ci` in tests/peers"

Event = dict[str, Any]


class PeerProcess(protocol.ProcessProtocol):
    """A peer child process and the JSON events it printed."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.stderr = b""
        self.ended: Deferred[int] = Deferred()
        self._buffer = b""
        self._waiting: list[tuple[Callable[[Event], bool], Deferred[Event]]] = []

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line)
            self.events.append(event)
            for entry in list(self._waiting):
                matches, waiter = entry
                if matches(event):
                    self._waiting.remove(entry)
                    waiter.callback(event)

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        for _, waiter in self._waiting:
            stderr = self.stderr.decode()[-2000:]
            waiter.errback(AssertionError(f"peer exited ({code}) first; stderr: {stderr}"))
        self._waiting.clear()
        self.ended.callback(code if code is not None else -1)

    def wait_for(self, event: str, **fields: Any) -> Deferred[Event]:
        """Fire with the first event named ``event`` with these fields (past or future)."""

        def matches(candidate: Event) -> bool:
            return candidate.get("event") == event and all(
                candidate.get(k) == v for k, v in fields.items()
            )

        for candidate in self.events:
            if matches(candidate):
                return defer.succeed(candidate)
        waiter: Deferred[Event] = Deferred()
        self._waiting.append((matches, waiter))
        return waiter

    def of(self, event: str) -> list[Event]:
        return [e for e in self.events if e.get("event") == event]

    @property
    def pid(self) -> int:
        assert self.transport is not None
        return int(self.transport.pid)  # type: ignore[attr-defined]

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self) -> Deferred[int]:
        """Kill the peer (waking it first if frozen) and wait for it to exit."""
        if not self.ended.called:
            try:
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, AssertionError):
                pass
        return self.ended


def spawn_peer(kind: str, *args: str) -> PeerProcess:
    """
    Start a peer: ``"websockets"`` or ``"ws"`` (Node), or the name of another
    Python script in ``tests/peers`` (such as ``"raw_slow_frame"``).
    """
    peer = PeerProcess()
    if kind == "websockets":
        argv = [sys.executable, "-u", str(PEERS / "websockets_peer.py"), *args]
    elif (PEERS / f"{kind}.py").is_file():
        argv = [sys.executable, "-u", str(PEERS / f"{kind}.py"), *args]
    elif kind == "ws":
        assert NODE is not None
        argv = [NODE, str(PEERS / "ws_peer.mjs"), *args]
    else:
        raise ValueError(kind)
    reactor.spawnProcess(peer, argv[0], argv, env=os.environ.copy())  # type: ignore[attr-defined]
    return peer


class Recording:
    """
    What a test wants to know about one of our connections, on either
    framing: ``keepalive`` has ``latency``, ``ping()`` and
    ``keepalive_timeout`` (the protocol on Autobahn, the transport on
    Twisted's framing); ``closed`` fires with ``(was_clean, code, reason)``
    (on Twisted's framing, which tells the application no close code:
    ``(clean TCP close, None, the reason's text)``).
    """

    def __init__(self) -> None:
        self.protocol: Any = None
        self.keepalive: Any = None
        self.opened: Deferred[Any] = Deferred()
        self.closed: Deferred[tuple[bool, int | None, str | None]] = Deferred()
        self.pongs: list[bytes] = []
        self.messages: list[bytes] = []

    @property
    def timed_out(self) -> bool:
        """Whether the heartbeat failed the connection."""
        return self.keepalive is not None and self.keepalive.keepalive_timeout is not None

    def close(self, code: int = 1000) -> None:
        """Close the connection from our side with ``code``."""
        if hasattr(self.keepalive, "sendClose"):
            self.keepalive.sendClose(code)
        else:
            self.keepalive.loseConnection(code)


def recording_protocol(base: type, recording: Recording, **settings: Any) -> type:
    """A KeepaliveMixin protocol on ``base`` that reports into ``recording``."""

    def onOpen(self: Any) -> None:
        recording.protocol = recording.keepalive = self
        recording.opened.callback(self)

    def onPong(self: Any, payload: bytes) -> None:
        recording.pongs.append(payload)

    def onMessage(self: Any, payload: bytes, isBinary: bool) -> None:
        recording.messages.append(payload)
        self.sendMessage(payload, isBinary)

    def onClose(self: Any, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not recording.closed.called:
            recording.closed.callback((wasClean, code, reason))

    namespace = {
        "onOpen": onOpen,
        "onPong": onPong,
        "onMessage": onMessage,
        "onClose": onClose,
        **settings,
    }
    return type(f"Recording{base.__name__}", (KeepaliveMixin, base), namespace)


class RecordingWebProtocol:
    """A plain ``twisted.web.websocket`` echo protocol reporting into a Recording."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.transport: Any = None

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        recording = self.recording
        recording.protocol = self
        recording.keepalive = self.transport
        recording.opened.callback(self.transport)

    def textMessageReceived(self, message: str) -> None:
        self.recording.messages.append(message.encode())
        self.transport.sendTextMessage(message)

    def bytesMessageReceived(self, data: bytes) -> None:
        self.recording.messages.append(bytes(data))
        self.transport.sendBytesMessage(data)

    def pongReceived(self, payload: bytes) -> None:
        self.recording.pongs.append(payload)

    def connectionLost(self, reason: Failure) -> None:
        from twisted.internet.error import ConnectionDone

        closed = self.recording.closed
        if not closed.called:
            closed.callback((reason.check(ConnectionDone) is not None, None, str(reason.value)))


def web_factory(recording: Recording, **settings: Any) -> Any:
    """A keepalive ``twisted.web.websocket`` factory of RecordingWebProtocols."""
    from twisted_keepalive.web import with_keepalive

    hooks = {name: settings.pop(name) for name in list(settings) if not name.islower()}

    class Factory:
        def buildProtocol(self, addr: Any) -> RecordingWebProtocol:
            protocol = RecordingWebProtocol(recording)
            for name, hook in hooks.items():
                setattr(protocol, name, hook.__get__(protocol))
            return protocol

    return with_keepalive(Factory(), **settings)


def listen(recording: Recording, framing: str = "autobahn", **settings: Any) -> Any:
    """Our keepalive server on a free loopback port; returns the listening port."""
    if framing == "twisted":
        from twisted.web.server import Site
        from twisted.web.websocket import WebSocketResource

        resource = WebSocketResource(web_factory(recording, **settings))
        resource.isLeaf = True
        site = Site(resource, timeout=None)
        return reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    factory = WebSocketServerFactory("ws://127.0.0.1")
    factory.protocol = recording_protocol(WebSocketServerProtocol, recording, **settings)
    return reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]


def connect(recording: Recording, port: int, framing: str = "autobahn", **settings: Any) -> Any:
    """Our keepalive client, connected to ``ws://127.0.0.1:port``."""
    if framing == "twisted":
        from twisted.web.websocket import WebSocketClientEndpoint

        endpoint = WebSocketClientEndpoint.new(reactor, f"ws://127.0.0.1:{port}/")
        connecting = Deferred.fromCoroutine(endpoint.connect(web_factory(recording, **settings)))
        connecting.addErrback(recording.opened.errback)
        return connecting
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}")
    factory.protocol = recording_protocol(WebSocketClientProtocol, recording, **settings)
    return reactor.connectTCP("127.0.0.1", port, factory)  # type: ignore[attr-defined]


def sleep(seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)  # type: ignore[arg-type]


class RealPeerCase(unittest.TestCase):
    """
    A trial test case that starts real peers and our servers, and cleans up
    after both.  ``framing`` is the framing our side runs on: a subclass
    with ``framing = "twisted"`` runs the same tests on Twisted's own.
    """

    timeout = 30
    framing = "autobahn"

    def peer(self, kind: str, *args: str) -> PeerProcess:
        """A peer (see :func:`spawn_peer`), killed when the test ends."""
        peer = spawn_peer(kind, *args)
        self.addCleanup(peer.stop)
        return peer

    def serve(self, recording: Recording, **settings: Any) -> int:
        """Our keepalive server (see :func:`listen`) until the test ends; its port."""
        port = listen(recording, self.framing, **settings)
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)
