"""
Verdicts on the wire: a peer mid-frame is given time, every timeout says why,
and the counters and hooks an operator relies on move as they should.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from twisted_keepalive import Cause, KeepaliveStats, ReactorLag, Timeout, collect_stats

from .wire import EchoServer, open_server


def open_with_stats(
    protocol_class: type = EchoServer, **options: Any
) -> tuple[Any, KeepaliveStats]:
    holder: list[KeepaliveStats] = []
    peer = open_server(
        protocol_class, factory_setup=lambda f: holder.append(collect_stats(f)), **options
    )
    return peer, holder[0]


def test_timeout_hook_and_counters_say_why() -> None:
    timeouts: list[Timeout] = []

    class Hooked(EchoServer):
        def onKeepaliveTimeout(self, timeout: Timeout) -> None:
            timeouts.append(timeout)

    peer, stats = open_with_stats(Hooked, closeHandshakeTimeout=0)
    peer.clock.advance(1.0)
    peer.clock.advance(0.5)
    [timeout] = timeouts
    assert timeout.cause is Cause.PEER_SILENT
    assert timeout.waited == pytest.approx(0.5)
    assert timeout.idle == pytest.approx(1.5)
    assert timeout.ping_timeout == 0.5
    assert stats.timeouts[Cause.PEER_SILENT] == 1
    assert stats.pings_sent == 1
    assert (stats.opened, stats.open) == (1, 1)
    peer.clock.advance(2.0)
    peer.lose()
    assert (stats.opened, stats.closed, stats.open) == (1, 1, 0)


def test_latency_hook_and_histogram_count_every_matched_pong() -> None:
    seen: list[float] = []

    class Hooked(EchoServer):
        def onLatency(self, latency: float) -> None:
            seen.append(latency)

    peer, stats = open_with_stats(Hooked)
    for _ in range(3):
        peer.clock.advance(1.0)
        [payload] = peer.pings()
        peer.clock.advance(0.25)
        peer.pong(payload)
    peer.pong(b"unknown")
    assert seen == [0.25, 0.25, 0.25]
    assert stats.pongs_received == 3
    assert sum(stats.latency_counts) == 3
    assert stats.latency_sum == pytest.approx(0.75)
    assert stats.pings_sent == 3
    # The loop advances a whole second after each pong: the first ping is on
    # time, the next two go out 0.25 s and 0.5 s after they were due.
    assert sum(stats.lateness_counts) == 3
    assert stats.lateness_sum == pytest.approx(0.75)


def test_reactor_lag_measures_how_late_timers_run() -> None:
    clock = Clock()
    lag = ReactorLag(clock, interval=0.5, now=clock.seconds)
    lag.start()
    clock.advance(0.5)
    assert lag.last == 0.0
    clock.advance(2.0)  # the reactor was blocked for 1.5 s past the due time
    assert lag.last == pytest.approx(1.5)
    assert lag.take_worst() == pytest.approx(1.5)
    clock.advance(0.5)
    assert lag.take_worst() == 0.0
    lag.stop()
    assert clock.getDelayedCalls() == []
