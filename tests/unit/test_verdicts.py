"""
Verdicts on the wire: a peer mid-frame is given time, every timeout says why,
and the counters and hooks an operator relies on move as they should.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from twisted_keepalive import Cause, KeepaliveStats, ReactorLag, Timeout, collect_stats

from .wire import CLOSE, TEXT, EchoServer, frame, open_server


def open_with_stats(
    protocol_class: type = EchoServer, **options: Any
) -> tuple[Any, KeepaliveStats]:
    holder: list[KeepaliveStats] = []
    peer = open_server(
        protocol_class, factory_setup=lambda f: holder.append(collect_stats(f)), **options
    )
    return peer, holder[0]


def test_peer_sending_a_large_frame_is_not_failed_and_answers_after_it() -> None:
    peer = open_server(EchoServer)
    peer.clock.advance(1.0)
    [payload] = peer.pings()
    big = frame(TEXT, b"x" * 100_000)
    # The frame trickles in over 3 s, six times ping_timeout; the Pong comes
    # right behind its last byte.
    for i in range(30):
        if i:
            peer.clock.advance(0.1)
        peer.protocol.dataReceived(big[i * len(big) // 30 : (i + 1) * len(big) // 30])
    assert all(opcode != CLOSE for opcode, _ in peer.frames())
    peer.pong(payload)
    assert peer.protocol.latency == pytest.approx(2.9)
    assert peer.protocol.state == peer.protocol.STATE_OPEN


def test_peer_that_stops_mid_frame_is_failed_ping_timeout_after_its_last_byte() -> None:
    peer = open_server(EchoServer, closeHandshakeTimeout=0)
    peer.clock.advance(1.0)
    peer.pings()
    big = frame(TEXT, b"x" * 10_000)
    peer.protocol.dataReceived(big[:5000])
    peer.clock.advance(0.4)
    peer.protocol.dataReceived(big[5000:6000])
    peer.clock.advance(0.4)
    assert peer.frames() == []
    # Due 0.5 s after the last byte, at most one 20 ms timer slot late.
    peer.clock.advance(0.12)
    assert [opcode for opcode, _ in peer.frames()] == [CLOSE]


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
