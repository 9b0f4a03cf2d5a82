"""
A real browser on the other end: Debian's headless Chromium, driven over the
DevTools protocol (tests/peers/chromium_cdp.mjs), opens a page this test
serves and holds a WebSocket to our keepalive server.  The browser answers
our Pings by itself (no page code is involved), the server measures the
round trip, and the server learns when the tab dies.  A second page runs the
browser module ``keepalive.js`` against the same server: its heartbeats are
answered by the server (``browser_heartbeat``), never by the page's code.
Every test runs on both framings (``...OnTwistedFraming``).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from importlib import resources
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.realpeers import NODE, PeerProcess, Recording, listen, sleep
from twisted_keepalive import Timeout

from .support import NODE_PEERS_READY, PEERS, record

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
INTERVAL, TIMEOUT, CLOSE_TIMEOUT = 1.0, 1.0, 1.0

PAGE = """<!doctype html>
<meta charset="utf-8"><title>keepalive</title>
<script>
  const report = (obj) => console.log("KA " + JSON.stringify(obj));
  const ws = new WebSocket("ws://127.0.0.1:%d/");
  ws.onopen = () => report({kind: "open"});
  ws.onclose = (e) => report({kind: "close", code: e.code, clean: e.wasClean});
</script>
"""


HEARTBEAT_PAGE = """<!doctype html>
<meta charset="utf-8"><title>keepalive.js</title>
<script type="module">
  import { KeepaliveSocket } from "/keepalive.js";
  const report = (obj) => console.log("KA " + JSON.stringify(obj));
  const options = { pingInterval: 200, pingTimeout: 1000 };
  const socket = new KeepaliveSocket("ws://127.0.0.1:%d/", options);
  socket.addEventListener("open", () => report({kind: "open"}));
  socket.addEventListener("latency", (e) => report({kind: "latency", latency: e.latency}));
  socket.addEventListener("close", (e) => report({kind: "close", code: e.code}));
</script>
"""


class _Page(Resource):
    isLeaf = True

    def __init__(self, body: bytes, heartbeat_body: bytes) -> None:
        super().__init__()
        self.body = body
        self.heartbeat_body = heartbeat_body

    def render_GET(self, request: Any) -> bytes:
        if request.path == b"/keepalive.js":
            request.setHeader(b"content-type", b"text/javascript; charset=utf-8")
            static = resources.files("twisted_keepalive").joinpath("static")
            return static.joinpath("keepalive.js").read_bytes()
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return self.heartbeat_body if request.path == b"/heartbeat" else self.body


class BrowserTests(unittest.TestCase):
    timeout = 60
    framing = "autobahn"

    def setUp(self) -> None:
        if NODE is None or not NODE_PEERS_READY:
            raise unittest.SkipTest("Node.js and tests/peers/node_modules/ws are needed")
        if not os.access(CHROMIUM, os.X_OK):
            raise unittest.SkipTest("Debian's chromium is not installed (apt-get install chromium)")
        self.recording = Recording()
        self.timeouts: list[Timeout] = []
        timeouts = self.timeouts

        def on_timeout(self: Any, timeout: Timeout) -> None:
            timeouts.append(timeout)

        hook = "onKeepaliveTimeout" if self.framing == "autobahn" else "keepaliveTimedOut"
        ws_port = listen(
            self.recording,
            self.framing,
            ping_interval=INTERVAL,
            ping_timeout=TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            first_ping_spread=0.0,
            browser_heartbeat=True,
            **{hook: on_timeout},
        )
        self.addCleanup(ws_port.stopListening)
        ws = ws_port.getHost().port
        site = Site(_Page((PAGE % ws).encode(), (HEARTBEAT_PAGE % ws).encode()))
        web_port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(web_port.stopListening)
        self.page_url = f"http://127.0.0.1:{web_port.getHost().port}/"

    def browse(self, path: str = "") -> PeerProcess:
        driver = PeerProcess()
        assert NODE is not None
        argv = [NODE, str(PEERS / "chromium_cdp.mjs"), self.page_url + path, "--chromium", CHROMIUM]
        reactor.spawnProcess(driver, NODE, argv, env=os.environ.copy())  # type: ignore[attr-defined]

        def stop() -> Any:
            if driver.ended.called:
                return driver.ended
            driver.transport.write(b"quit\n")  # type: ignore[union-attr]
            kill = reactor.callLater(5, driver.stop)  # type: ignore[attr-defined]

            def ended(code: int) -> int:
                if kill.active():
                    kill.cancel()
                return code

            return driver.ended.addBoth(ended)

        self.addCleanup(stop)
        return driver

    @inlineCallbacks
    def answered_pings(self, driver: PeerProcess) -> Any:
        yield driver.wait_for("page", kind="open")
        protocol = yield self.recording.opened
        while len(self.recording.pongs) < 2:
            yield sleep(0.1)
        return protocol

    @inlineCallbacks
    def test_chromium_answers_our_pings_and_a_crashed_tab_is_detected(self) -> Any:
        driver = self.browse()
        protocol = yield self.answered_pings(driver)
        latency = protocol.latency
        self.assertGreater(latency, 0.0)
        self.assertLess(latency, TIMEOUT)
        driver.transport.write(b"crash\n")  # type: ignore[union-attr]
        crashed_at = time.monotonic()
        yield driver.wait_for("crashed")
        was_clean, code, reason = yield self.recording.closed
        detected_after = time.monotonic() - crashed_at
        by = "heartbeat" if self.timeouts else "TCP (the browser closed the socket)"
        record(
            f"browser tab crash ({self.framing})",
            latency_ms=round(latency * 1000, 3),
            pongs=len(self.recording.pongs),
            detected_after=round(detected_after, 3),
            detected_by=by,
            close=[was_clean, code, reason],
        )
        self.assertLess(detected_after, INTERVAL + TIMEOUT + CLOSE_TIMEOUT + 0.5)

    @inlineCallbacks
    def test_chromium_tab_closed_is_detected(self) -> Any:
        driver = self.browse()
        yield self.answered_pings(driver)
        driver.transport.write(b"close\n")  # type: ignore[union-attr]
        closed_at = time.monotonic()
        yield driver.wait_for("destroyed")
        was_clean, code, reason = yield self.recording.closed
        detected_after = time.monotonic() - closed_at
        by = "heartbeat" if self.timeouts else "the browser closed the WebSocket"
        record(
            "browser tab closed",
            detected_after=round(detected_after, 3),
            detected_by=by,
            close=[was_clean, code, reason],
        )
        self.assertLess(detected_after, INTERVAL + TIMEOUT + CLOSE_TIMEOUT + 0.5)
        self.assertEqual(self.timeouts, [])

    @inlineCallbacks
    def test_frozen_chromium_is_detected_by_the_heartbeat(self) -> Any:
        driver = self.browse()
        yield self.answered_pings(driver)
        browser = yield driver.wait_for("browser")
        group = int(browser["pid"])
        # Every Chromium process (browser, network service, renderer) stops:
        # nothing closes the socket, only the heartbeat can tell.
        os.killpg(group, signal.SIGSTOP)
        self.addCleanup(os.killpg, group, signal.SIGCONT)
        frozen_at = time.monotonic()
        was_clean, code, reason = yield self.recording.closed
        detected_after = time.monotonic() - frozen_at
        record(
            "browser frozen (SIGSTOP)",
            bound=INTERVAL + TIMEOUT + CLOSE_TIMEOUT + 0.5,
            detected_after=round(detected_after, 3),
            causes=[t.cause.value for t in self.timeouts],
            close=[was_clean, code, reason],
        )
        self.assertLess(detected_after, INTERVAL + TIMEOUT + CLOSE_TIMEOUT + 0.5)
        self.assertEqual([t.cause.value for t in self.timeouts], ["peer_silent"])
        self.assertTrue(self.recording.timed_out)

    @inlineCallbacks
    def test_keepalive_js_heartbeats_are_answered_by_the_server(self) -> Any:
        driver = self.browse("heartbeat")
        yield driver.wait_for("page", kind="open")
        while len([e for e in driver.of("page") if e.get("kind") == "latency"]) < 3:
            yield sleep(0.1)
        latencies = [e["latency"] for e in driver.of("page") if e.get("kind") == "latency"]
        record(f"keepalive.js heartbeats ({self.framing})", latencies_ms=latencies[:5])
        self.assertTrue(all(0 <= latency < 1000 for latency in latencies), latencies)
        # The heartbeats never reached the application as messages.
        self.assertEqual(self.recording.messages, [])
        self.assertEqual(self.timeouts, [])


class BrowserOnTwistedFramingTests(BrowserTests):
    framing = "twisted"
