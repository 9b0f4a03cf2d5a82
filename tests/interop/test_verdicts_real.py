"""
Heartbeat verdicts under real stalls, over real sockets: a blocked reactor is
not a dead peer, a peer busy sending one large frame is not a dead peer, and a
silent peer is still failed -- with a cause that says which.  On Autobahn's
framing, and the same tests again on Twisted's own (the
``...OnTwistedFraming`` subclasses).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial import unittest

from tests.realpeers import NODE_MISSING, NODE_PEERS_READY, RealPeerCase, Recording
from twisted_keepalive import Cause, Timeout
from twisted_keepalive.autobahn.link import Link

#: The application's timeout hook on each framing.
TIMEOUT_HOOK = {"autobahn": "onKeepaliveTimeout", "twisted": "keepaliveTimedOut"}

STALL = 1.2  # seconds the handler blocks the reactor: longer than ping_timeout
# First ping exactly one interval in, so the timing bounds below are exact.
FAST = {
    "ping_interval": 0.3,
    "ping_timeout": 0.5,
    "close_timeout": 1.0,
    "first_ping_spread": 0.0,
}


class _StallOnRead:
    """A pipe whose reader blocks the reactor for ``STALL`` seconds per byte."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()

    def fileno(self) -> int:
        return self._read

    def trigger(self) -> None:
        os.write(self._write, b"x")

    def doRead(self) -> None:
        os.read(self._read, 1)
        time.sleep(STALL)

    def logPrefix(self) -> str:
        return "stall"

    def connectionLost(self, reason: object) -> None:
        pass

    def close(self) -> None:
        reactor.removeReader(self)  # type: ignore[attr-defined]
        os.close(self._read)
        os.close(self._write)


class StallingServerTests(RealPeerCase):
    def setUp(self) -> None:
        self.recording = Recording()
        self.timeouts: list[Timeout] = []
        self.warnings: list[LogEvent] = []

        def observe(event: LogEvent) -> None:
            if event.get("keepalive_event") == "timeout":
                self.warnings.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def serve_stalling_after_first_ping(self, **overrides: Any) -> int:
        """
        Our server (``FAST`` settings, but for ``overrides``), whose reactor
        is blocked by an I/O handler right after its first keepalive ping
        goes out.

        The block must happen in the reactor's I/O phase, as a blocking
        ``dataReceived`` would: as the ping is written we make a pipe
        readable, and its handler sleeps in the next I/O phase; the peer's
        Pong arrives while it sleeps, and the overdue deadline timer runs
        before the reactor reads the socket again.
        """
        timeouts = self.timeouts
        stall = _StallOnRead()
        reactor.addReader(stall)  # type: ignore[attr-defined]
        self.addCleanup(stall.close)
        stalled: list[bool] = []

        def stalling(link_class: type[Any]) -> type[Any]:
            class Stalling(link_class):  # type: ignore[misc,valid-type]
                def send_keepalive(self) -> None:
                    if not stalled:
                        stalled.append(True)
                        # Readable before the Pong can be: epoll reports the
                        # pipe first, so the block starts before the Pong is read.
                        stall.trigger()
                    super().send_keepalive()

            return Stalling

        def timed_out(self: Any, timeout: Timeout) -> None:
            timeouts.append(timeout)

        settings: dict[str, Any] = {TIMEOUT_HOOK[self.framing]: timed_out, **FAST, **overrides}
        if self.framing == "autobahn":
            settings["_keepalive_link_class"] = stalling(Link)
        else:
            from twisted_keepalive.web import protocol as web_protocol

            self.patch(web_protocol, "WebLink", stalling(web_protocol.WebLink))
        return self.serve(self.recording, **settings)

    @inlineCallbacks
    def test_responsive_peer_survives_a_reactor_stall_longer_than_ping_timeout(self) -> Any:
        port = self.serve_stalling_after_first_ping()
        peer = self.peer("websockets", "client", f"ws://127.0.0.1:{port}", "--duration", "2.5")
        close = yield peer.wait_for("close")
        self.assertEqual(close["code"], 1000, "the peer closed normally, not on a 1011")
        yield self.recording.closed
        self.assertEqual(self.timeouts, [])
        self.assertEqual(self.warnings, [])
        # The first round trip includes our own stall: measured, not punished.
        self.assertGreaterEqual(len(self.recording.pongs), 3)

    @inlineCallbacks
    def test_silent_peer_under_the_same_stall_is_failed_and_blamed_on_both(self) -> Any:
        if not NODE_PEERS_READY:
            raise unittest.SkipTest(NODE_MISSING)
        port = self.serve_stalling_after_first_ping()
        peer = self.peer("ws", "client", f"ws://127.0.0.1:{port}", "--no-pong")
        close = yield peer.wait_for("close")
        self.assertEqual((close["code"], close["reason"]), (1011, "keepalive ping timeout"))
        yield self.recording.closed
        [timeout] = self.timeouts
        self.assertIs(timeout.cause, Cause.REACTOR_STALLED)
        self.assertGreater(timeout.lateness, STALL - 0.5 - 0.3)
        [warning] = self.warnings
        self.assertEqual(warning["cause"], Cause.REACTOR_STALLED)
        self.assertEqual(warning["log_level"].name, "warn")
        for field in ("peer", "waited", "lateness", "idle", "queued", "latency"):
            self.assertIn(field, warning)


    @inlineCallbacks
    def test_pong_behind_the_peers_own_data_in_our_receive_queue_is_waited_for(self) -> Any:
        # During the stall the peer answers the Ping only after 2 MiB of
        # messages: its Pong is here, in our receive queue, behind data the
        # reactor reads 64 KiB per turn.  One turn of recheck cannot reach it.
        # The peer answers every later Ping behind 2 MiB too: a ping_timeout
        # still shorter than the stall, but not so short that a peer process
        # starved of CPU on a loaded machine misses it (0.5 s did, on both
        # framings, with the peer silent for 0.54 s long after the stall).
        port = self.serve_stalling_after_first_ping(ping_timeout=1.0)
        burst = 2 * 1024 * 1024
        peer = self.peer(
            "raw_peer", "127.0.0.1", str(port), "--burst", str(burst), "--duration", "2.5",
            "--quiet-pings",
        )  # fmt: skip
        yield peer.ended
        yield self.recording.closed
        self.assertEqual(self.timeouts, [])
        self.assertEqual(self.warnings, [])
        self.assertGreaterEqual(len(self.recording.messages), burst // 1024)
        self.assertGreaterEqual(len(self.recording.pongs), 2)


class BusyPeerTests(RealPeerCase):
    @inlineCallbacks
    def test_peer_sending_a_multi_megabyte_frame_slowly_is_not_failed(self) -> Any:
        recording = Recording()
        timeouts: list[Timeout] = []

        def timed_out(self: Any, timeout: Timeout) -> None:
            timeouts.append(timeout)

        port = self.serve(recording, **{TIMEOUT_HOOK[self.framing]: timed_out}, **FAST)
        size = 3 * 1024 * 1024
        peer = self.peer(
            "raw_slow_frame", "127.0.0.1", str(port),
            "--size", str(size), "--rate", str(1024 * 1024), "--linger", "1.5",
        )  # fmt: skip
        sent = yield peer.wait_for("sent")
        yield peer.ended
        self.assertEqual(timeouts, [])
        self.assertEqual([len(m) for m in recording.messages], [size])
        pings_after = [e for e in peer.of("ping") if e["t"] >= sent["t"]]
        self.assertGreaterEqual(len(pings_after), 2, "pings resume and are answered")
        self.assertNotIn(1011, [e.get("code") for e in peer.of("close")])
        self.assertGreater(recording.keepalive.latency, 0.0)
        if not recording.closed.called:
            recording.keepalive.transport.abortConnection()
        yield recording.closed

    @inlineCallbacks
    def test_peer_silent_from_the_start_is_failed_within_the_usual_bound(self) -> Any:
        recording = Recording()
        port = self.serve(recording, **FAST)
        peer = self.peer("raw_slow_frame", "127.0.0.1", str(port), "--size", "0", "--linger", "5")
        yield peer.wait_for("sent")
        peer.signal(signal.SIGSTOP)
        start = time.monotonic()
        was_clean, code, reason = yield recording.closed
        elapsed = time.monotonic() - start
        self.assertLess(elapsed, 0.3 + 0.5 + 1.0 + 0.3)
        self.assertTrue(recording.timed_out)
        if self.framing == "autobahn":
            # Frozen: it never answers the 1011 Close either, so we abort.
            # (On Twisted's framing TCP closes as soon as our Close has
            # left, which the frozen peer's kernel still lets it do.)
            self.assertEqual((was_clean, code), (False, 1006))
            self.assertIn("keepalive ping timeout", reason)


class StallingServerOnTwistedFramingTests(StallingServerTests):
    framing = "twisted"


class BusyPeerOnTwistedFramingTests(BusyPeerTests):
    framing = "twisted"
