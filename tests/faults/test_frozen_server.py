"""
A frozen server, seen from our keepalive *client*: a ``websockets`` server
process is ``SIGSTOP``ped.  Its kernel still ACKs our bytes, so TCP sees
nothing wrong; only the heartbeat notices.  (The frozen *client* case is
tests/interop/test_mixin_peers.py::OurServerTests::
test_frozen_peer_is_detected_within_interval_timeout_and_close_timeout.)
"""

from __future__ import annotations

import signal
import time
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from tests.realpeers import Recording, connect, sleep, spawn_peer
from twisted_keepalive import Cause, Timeout

from .support import record

INTERVAL, TIMEOUT, CLOSE_TIMEOUT = 0.2, 0.5, 1.0
BOUND = INTERVAL + TIMEOUT + CLOSE_TIMEOUT
MARGIN = 0.5  # scheduling slack on a loaded 2-core CI machine


class FrozenServerTests(unittest.TestCase):
    timeout = 30

    @inlineCallbacks
    def test_our_client_frees_a_frozen_websockets_server_within_the_bound(self) -> Any:
        peer = spawn_peer("websockets", "server", "--port", "0")
        self.addCleanup(peer.stop)
        listening = yield peer.wait_for("listening")
        recording = Recording()
        timeouts: list[Timeout] = []

        def onKeepaliveTimeout(self: Any, timeout: Timeout) -> None:
            timeouts.append(timeout)

        connector = connect(
            recording,
            listening["port"],
            ping_interval=INTERVAL,
            ping_timeout=TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            first_ping_spread=0.0,
            onKeepaliveTimeout=onKeepaliveTimeout,
        )
        self.addCleanup(connector.disconnect)
        yield recording.opened
        while len(recording.pongs) < 2:
            yield sleep(0.05)
        peer.signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        was_clean, code, reason = yield recording.closed
        elapsed = time.monotonic() - frozen_at
        record(
            "frozen server (our client)",
            bound=BOUND + MARGIN,
            freed_after=round(elapsed, 3),
            cause=timeouts[0].cause.value if timeouts else None,
            close=[code, reason],
        )
        self.assertLess(elapsed, BOUND + MARGIN)
        self.assertGreater(elapsed, TIMEOUT)
        self.assertEqual([t.cause for t in timeouts], [Cause.PEER_SILENT])
        self.assertFalse(was_clean)
        self.assertEqual(code, 1006)
        self.assertIn("keepalive ping timeout", reason)
