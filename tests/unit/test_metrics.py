"""
The Prometheus collector, read back through prometheus_client's own parser.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from twisted_keepalive import Cause, KeepaliveStats, ReactorLag
from twisted_keepalive.metrics import KeepaliveCollector


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_counters_and_histogram_sum_over_factories() -> None:
    first, second = KeepaliveStats(), KeepaliveStats()
    first.opened, first.closed, second.opened = 3, 1, 2
    first.pings_sent, second.pings_sent = 10, 5
    for latency in (0.0003, 0.002, 0.2):
        first.observe_latency(latency)
    second.observe_latency(30.0)
    second.timeouts[Cause.REACTOR_STALLED] += 1
    first.keepalive_ping_sent(0.003)
    second.keepalive_ping_sent(0.7)
    registry = CollectorRegistry()
    registry.register(KeepaliveCollector([first, second]))
    samples = scrape(registry)
    assert samples[("twisted_keepalive_connections_opened_total", ())] == 5
    assert samples[("twisted_keepalive_connections_open", ())] == 4
    assert samples[("twisted_keepalive_pings_sent_total", ())] == 17
    assert samples[("twisted_keepalive_pongs_received_total", ())] == 4
    timeouts = "twisted_keepalive_heartbeat_timeouts_total"
    assert samples[(timeouts, (("cause", "reactor_stalled"),))] == 1
    assert samples[(timeouts, (("cause", "peer_silent"),))] == 0
    bucket = "twisted_keepalive_latency_seconds_bucket"
    assert samples[(bucket, (("le", "0.0005"),))] == 1
    assert samples[(bucket, (("le", "0.0025"),))] == 2
    assert samples[(bucket, (("le", "20.0"),))] == 3
    assert samples[(bucket, (("le", "+Inf"),))] == 4
    assert samples[("twisted_keepalive_latency_seconds_count", ())] == 4
    lateness = "twisted_keepalive_ping_lateness_seconds_bucket"
    assert samples[(lateness, (("le", "0.005"),))] == 1
    assert samples[(lateness, (("le", "1.0"),))] == 2
    assert samples[("twisted_keepalive_ping_lateness_seconds_sum", ())] == pytest.approx(0.703)


def test_reactor_lag_gauges() -> None:
    clock = Clock()
    lag = ReactorLag(clock, interval=0.5, now=clock.seconds)
    lag.start()
    clock.advance(1.5)
    registry = CollectorRegistry()
    registry.register(KeepaliveCollector(KeepaliveStats(), lag))
    samples = scrape(registry)
    assert samples[("twisted_keepalive_reactor_lag_seconds", ())] == 1.0
    assert samples[("twisted_keepalive_reactor_lag_max_seconds", ())] == 1.0
    clock.advance(0.5)
    # A scrape resets nothing: a second Prometheus server sees the same worst.
    again = scrape(registry)
    assert again[("twisted_keepalive_reactor_lag_seconds", ())] == 0.0
    assert again[("twisted_keepalive_reactor_lag_max_seconds", ())] == 1.0
    assert again[("twisted_keepalive_reactor_lag_probes_seconds_count", ())] == 2
    assert again[("twisted_keepalive_reactor_lag_probes_seconds_sum", ())] == 1.0
    assert again[("twisted_keepalive_reactor_lag_probes_seconds_bucket", (("le", "1.0"),))] == 2
    assert again[("twisted_keepalive_reactor_lag_probes_seconds_bucket", (("le", "0.5"),))] == 1
    # The worst is that of the last minute: once the stall is older, it goes.
    for _ in range(122):
        clock.advance(0.5)
    assert scrape(registry)[("twisted_keepalive_reactor_lag_max_seconds", ())] == 0.0
    lag.stop()
