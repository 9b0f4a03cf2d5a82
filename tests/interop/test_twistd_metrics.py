"""
``twistd wskeepalive --metrics``: Prometheus metrics scraped over real HTTP
from the running server while real clients connect, parsed with
prometheus_client's own parser.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.realpeers import NODE_MISSING, NODE_PEERS_READY

from .conftest import StartPeer, StartServer, free_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        body = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def wait_for(port: int, name: str, value: float, timeout: float = 10.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if samples.get((name, ())) == value or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


@pytest.mark.skipif(not NODE_PEERS_READY, reason=NODE_MISSING)
def test_metrics_follow_live_and_silent_peers(
    twistd: StartServer, framing: str, peers: StartPeer
) -> None:
    metrics_port = free_port()
    server = twistd(
        "--ping-interval", "0.2", "--ping-timeout", "0.4", "--close-timeout", "0.5",
        "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1",
    )  # fmt: skip
    assert scrape(metrics_port)[("twisted_keepalive_connections_open", ())] == 0
    live = [peers("websockets", "client", server.url, "--duration", "1.5") for _ in range(2)]
    during = wait_for(metrics_port, "twisted_keepalive_connections_open", 2)
    assert during[("twisted_keepalive_connections_open", ())] == 2
    for peer in live:
        peer.wait_for("close")
    silent = peers("ws", "client", server.url, "--no-pong")
    assert silent.wait_for("close")["code"] == 1011
    after = wait_for(metrics_port, "twisted_keepalive_connections_open", 0)
    pings_seen = sum(len(peer.of("ping")) for peer in live)
    pongs = after[("twisted_keepalive_latency_seconds_count", ())]
    assert after[("twisted_keepalive_pongs_received_total", ())] == pongs
    # Every Ping a live peer saw was answered, but for at most one per peer
    # that crossed its closing handshake (a closing peer sends no Pong).
    assert pings_seen - len(live) <= pongs <= pings_seen
    timeouts = "twisted_keepalive_heartbeat_timeouts_total"
    assert after[(timeouts, (("cause", "peer_silent"),))] == 1
    assert after[(timeouts, (("cause", "reactor_stalled"),))] == 0
    assert after[("twisted_keepalive_connections_opened_total", ())] == 3
    assert after[("twisted_keepalive_ping_lateness_seconds_count", ())] == pings_seen + 1
    assert ("twisted_keepalive_reactor_lag_seconds", ()) in after
