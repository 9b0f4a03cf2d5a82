"""
Our keepalive over real loopback sockets against peers nobody here wrote:
the ``websockets`` library (as client and as server) and Node's ``ws``
(including ``autoPong: false``, a peer that never answers), plus a real
frozen peer process (``SIGSTOP``) -- on Autobahn's framing, and the same
tests again on Twisted's own (the ``...OnTwistedFraming`` subclasses).

These are trial tests: the reactor runs for real, and trial fails a test that
leaves a timer or a socket behind.
"""

from __future__ import annotations

import itertools
import signal
import time
from typing import Any

from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from tests.realpeers import (
    NODE_MISSING,
    NODE_PEERS_READY,
    RealPeerCase,
    Recording,
    connect,
    sleep,
)
from twisted_keepalive import ConnectionClosed

# First ping exactly one interval in, so the timing bounds below are exact.
FAST = {
    "ping_interval": 0.2,
    "ping_timeout": 0.5,
    "close_timeout": 1.0,
    "first_ping_spread": 0.0,
}


class OurServerTests(RealPeerCase):
    def setUp(self) -> None:
        self.recording = Recording()

    def serve_fast(self, **settings: Any) -> int:
        return self.serve(self.recording, **{**FAST, **settings})

    @inlineCallbacks
    def test_websockets_client_answers_our_pings_on_schedule(self) -> Any:
        port = self.serve_fast()
        peer = self.peer("websockets", "client", f"ws://127.0.0.1:{port}", "--duration", "1.5")
        yield peer.wait_for("close")
        yield self.recording.closed
        times = [e["t"] for e in peer.of("ping")]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        self.assertGreaterEqual(len(times), 5)
        for gap in gaps:
            # Ping to ping every 0.2 s; the peer timestamps on its own parse.
            self.assertTrue(0.15 < gap < 0.45, gaps)
        self.assertEqual(len(self.recording.pongs), len(times))
        self.assertGreater(self.recording.keepalive.latency, 0.0)
        self.assertLess(self.recording.keepalive.latency, 0.2)

    @inlineCallbacks
    def test_ping_fires_with_the_measured_round_trip(self) -> Any:
        port = self.serve_fast(ping_interval=None)
        peer = self.peer("websockets", "client", f"ws://127.0.0.1:{port}", "--duration", "5")
        protocol = yield self.recording.opened
        before = time.monotonic()
        latency = yield protocol.ping(b"measure me")
        elapsed = time.monotonic() - before
        self.assertGreater(latency, 0.0)
        self.assertLessEqual(latency, elapsed)
        self.assertEqual(protocol.latency, latency)
        pinged = yield peer.wait_for("ping", data=b"measure me".hex())
        self.assertTrue(pinged)
        # No keepalive pings with ping_interval=None: only ours went out.
        self.assertEqual(len(peer.of("ping")), 1)
        self.recording.close(1000)
        yield self.recording.closed

    @inlineCallbacks
    def test_pending_ping_fails_when_the_peer_goes_away(self) -> Any:
        port = self.serve_fast(ping_interval=None)
        peer = self.peer("ws", "client", f"ws://127.0.0.1:{port}", "--no-pong")
        protocol = yield self.recording.opened
        pending = protocol.ping()
        yield peer.wait_for("ping")
        peer.signal(signal.SIGKILL)
        error = yield self.assertFailure(pending, ConnectionClosed)
        self.assertEqual(error.code, 1006)

    @inlineCallbacks
    def test_ws_peer_that_never_answers_is_failed_with_1011(self) -> Any:
        if not NODE_PEERS_READY:
            raise unittest.SkipTest(NODE_MISSING)
        port = self.serve_fast()
        peer = self.peer("ws", "client", f"ws://127.0.0.1:{port}", "--no-pong")
        yield self.recording.opened
        opened_at = time.monotonic()
        close = yield peer.wait_for("close")
        self.assertEqual((close["code"], close["reason"]), (1011, "keepalive ping timeout"))
        yield self.recording.closed
        elapsed = time.monotonic() - opened_at
        # interval + timeout, plus the closing handshake the live ws peer does.
        self.assertLess(elapsed, 0.2 + 0.5 + 1.0)
        self.assertGreaterEqual(elapsed, 0.2 + 0.5 - 0.05)

    @inlineCallbacks
    def test_frozen_peer_is_detected_within_interval_timeout_and_close_timeout(self) -> Any:
        port = self.serve_fast()
        peer = self.peer("websockets", "client", f"ws://127.0.0.1:{port}")
        yield self.recording.opened
        while not self.recording.pongs:
            yield sleep(0.05)
        peer.signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        was_clean, code, reason = yield self.recording.closed
        elapsed = time.monotonic() - frozen_at
        self.assertLess(elapsed, 0.2 + 0.5 + 1.0 + 0.3)
        self.assertTrue(self.recording.timed_out)
        if self.framing == "autobahn":
            # No Close came back (on Twisted's framing the TCP connection
            # closes as soon as our Close has left, which the frozen peer's
            # kernel still lets it do: a clean TCP close).
            self.assertFalse(was_clean)
            self.assertEqual(code, 1006)
            self.assertIn("keepalive ping timeout", reason)


class OurClientTests(RealPeerCase):
    @inlineCallbacks
    def start_server(self, *args: str) -> Any:
        peer = self.peer("websockets", "server", "--port", "0", *args)
        listening = yield peer.wait_for("listening")
        return peer, listening["port"]

    @inlineCallbacks
    def test_our_client_pings_a_websockets_server(self) -> Any:
        peer, port = yield self.start_server()
        recording = Recording()
        connect(recording, port, self.framing, **FAST)
        protocol = yield recording.opened
        yield sleep(1.0)
        self.assertGreaterEqual(len(peer.of("ping")), 3)
        self.assertEqual(len(recording.pongs), len(peer.of("ping")))
        self.assertGreater(protocol.latency, 0.0)
        latency = yield protocol.ping("from the client")
        self.assertGreater(latency, 0.0)
        recording.close(1000)
        was_clean, _, _ = yield recording.closed
        self.assertTrue(was_clean)

    @inlineCallbacks
    def test_our_client_fails_a_silent_websockets_server_with_1011(self) -> Any:
        peer, port = yield self.start_server("--no-pong")
        recording = Recording()
        connect(recording, port, self.framing, **FAST)
        yield recording.opened
        close = yield peer.wait_for("close")
        self.assertEqual((close["code"], close["reason"]), (1011, "keepalive ping timeout"))
        yield recording.closed
        self.assertTrue(recording.timed_out)
        if self.framing == "autobahn":
            self.assertTrue(issubclass(type(recording.protocol), WebSocketClientProtocol))


class OurServerOnTwistedFramingTests(OurServerTests):
    framing = "twisted"


class OurClientOnTwistedFramingTests(OurClientTests):
    framing = "twisted"
