"""
Prometheus metrics over real HTTP while real clients come and go: the counters
move exactly as the scenario says, read back with prometheus_client's parser
-- the same series on Autobahn's framing and on Twisted's own
(``MetricsOverHttpOnTwistedFramingTests``).
"""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.realpeers import NODE_MISSING, NODE_PEERS_READY, sleep, spawn_peer
from twisted_keepalive import KeepaliveMixin, collect_stats
from twisted_keepalive.metrics import MetricsService


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read()  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SETTINGS: dict[str, Any] = {
    "ping_interval": 0.2,
    "ping_timeout": 0.4,
    "close_timeout": 0.5,
    "first_ping_spread": 0.0,
}


class Echo(KeepaliveMixin, WebSocketServerProtocol):
    ping_interval = SETTINGS["ping_interval"]
    ping_timeout = SETTINGS["ping_timeout"]
    close_timeout = SETTINGS["close_timeout"]
    first_ping_spread = SETTINGS["first_ping_spread"]


def echo_site(framing: str) -> tuple[Any, Any]:
    """An echo server's listening factory on ``framing``, and the factory to count."""
    if framing == "autobahn":
        factory = WebSocketServerFactory("ws://127.0.0.1")
        factory.protocol = Echo
        return factory, factory
    from twisted.web.server import Site
    from twisted.web.websocket import WebSocketResource

    from twisted_keepalive.server.echo_web import EchoProtocol
    from twisted_keepalive.web import with_keepalive

    keepalive = with_keepalive(EchoProtocol, **SETTINGS)
    resource = WebSocketResource(keepalive)
    resource.isLeaf = True
    return Site(resource, timeout=None), keepalive


class MetricsOverHttpTests(unittest.TestCase):
    timeout = 30
    framing = "autobahn"

    def setUp(self) -> None:
        listening, counted = echo_site(self.framing)
        self.stats = collect_stats(counted)
        port = reactor.listenTCP(0, listening, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.ws_port = port.getHost().port
        metrics_port = free_port()
        endpoint = f"tcp:{metrics_port}:interface=127.0.0.1"
        self.metrics = MetricsService(endpoint, [self.stats], reactor)
        self.metrics.startService()
        self.addCleanup(self.metrics.stopService)
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    @inlineCallbacks
    def scrape(self) -> Any:
        # A plain HTTP client, as Prometheus would be; in a thread so the
        # reactor keeps serving the scrape.
        body = yield deferToThread(_get, self.metrics_url)
        samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    @inlineCallbacks
    def test_pongs_move_the_histogram_and_a_silent_peer_adds_exactly_one_timeout(self) -> Any:
        if not NODE_PEERS_READY:
            raise unittest.SkipTest(NODE_MISSING)
        before = yield self.scrape()
        self.assertEqual(before[("twisted_keepalive_connections_open", ())], 0)
        url = f"ws://127.0.0.1:{self.ws_port}"
        live = [spawn_peer("websockets", "client", url, "--duration", "1.2") for _ in range(3)]
        for peer in live:
            self.addCleanup(peer.stop)
        # Scrape once all three are open, however long a loaded machine takes
        # to start them.
        for peer in live:
            yield peer.wait_for("open")
        during = yield self.scrape()
        self.assertEqual(during[("twisted_keepalive_connections_open", ())], 3)
        for peer in live:
            yield peer.ended
        silent = spawn_peer("ws", "client", url, "--no-pong")
        self.addCleanup(silent.stop)
        yield silent.wait_for("close")
        yield sleep(0.2)
        after = yield self.scrape()
        pings_seen_by_peers = sum(len(p.of("ping")) for p in live)
        histogram_count = after[("twisted_keepalive_latency_seconds_count", ())]
        self.assertEqual(after[("twisted_keepalive_pongs_received_total", ())], histogram_count)
        # Every Ping a live peer saw was answered, but for at most one per
        # peer that crossed its closing handshake (a closing peer sends no Pong).
        self.assertLessEqual(histogram_count, pings_seen_by_peers)
        self.assertGreaterEqual(histogram_count, pings_seen_by_peers - len(live))
        self.assertEqual(
            after[("twisted_keepalive_heartbeat_timeouts_total", (("cause", "peer_silent"),))], 1
        )
        self.assertEqual(after[("twisted_keepalive_connections_opened_total", ())], 4)
        self.assertEqual(after[("twisted_keepalive_connections_open", ())], 0)
        # The live peers' Pings, and the silent peer's one.
        self.assertEqual(after[("twisted_keepalive_pings_sent_total", ())], pings_seen_by_peers + 1)
        self.assertIn(("twisted_keepalive_reactor_lag_seconds", ()), after)


class MetricsOverHttpOnTwistedFramingTests(MetricsOverHttpTests):
    framing = "twisted"
