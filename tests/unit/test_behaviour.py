"""
What the keepalive promises on either framing -- Autobahn's and Twisted's own
``twisted.web.websocket`` -- through the same core, on a ``task.Clock``
driving the production timer wheel: each test runs once per framing (the
``framing`` fixture) and asserts frames on the wire, Deferreds, hooks, log
events and timers left behind.
"""

from __future__ import annotations

import random

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionAborted
from twisted.internet.task import Clock
from twisted.logger import LogEvent
from twisted.python.failure import Failure

from twisted import version as twisted_release
from twisted_keepalive import Cause, ConnectionClosed, PingInFlight
from twisted_keepalive.core.ledger import MAX_UNANSWERED_KEEPALIVES

from .framings import Events, open_peer
from .wire import CLOSE, PING, TEXT, frame, result_of

TIMEOUT_CLOSE = (1011).to_bytes(2, "big") + b"keepalive ping timeout"


def opcodes(peer: object) -> list[int]:
    return [opcode for opcode, _ in peer.frames()]  # type: ignore[attr-defined]


# -- the schedule -----------------------------------------------------------------


@pytest.mark.parametrize("side", ["server", "client"])
def test_pings_go_out_every_interval_and_measure_latency(framing: str, side: str) -> None:
    peer = open_peer(framing, side)
    times = []
    answer: list[bytes] = []
    for _ in range(36):
        peer.clock.advance(0.125)
        for payload in answer:
            peer.pong(payload)
        answer = peer.pings()
        times += [peer.clock.seconds()] * len(answer)
    assert times == [1.0, 2.0, 3.0, 4.0]
    assert peer.keepalive.latency == pytest.approx(0.125)
    assert peer.events.latencies == pytest.approx([0.125] * 4)


def test_client_keepalive_pings_are_masked(framing: str) -> None:
    peer = open_peer(framing, "client")
    peer.clock.advance(1.0)
    raw = peer.transport.value()
    assert raw[0] == 0x80 | PING and raw[1] & 0x80, "client frames must be masked"


def test_only_one_keepalive_ping_is_in_flight(framing: str) -> None:
    peer = open_peer(framing, ping_timeout=5.0)
    peer.clock.advance(1.0)
    assert len(peer.pings()) == 1
    peer.clock.advance(3.0)
    assert peer.pings() == []


def test_first_pings_of_simultaneous_connections_spread_over_the_interval(
    framing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    # The spread is random; the test must not be.  A generator of its own:
    # the global one's sequence depends on what else drew from it.
    monkeypatch.setattr("twisted_keepalive.glue.link.random", random.Random(20261125))
    peers = [open_peer(framing, clock=clock, first_ping_spread=1.0) for _ in range(100)]
    first_ping_at: list[float] = []
    for _ in range(8):
        clock.advance(0.125)
        first_ping_at += [clock.seconds() for peer in peers if peer.pings()]
    assert len(first_ping_at) == 100, "every first ping within one interval"
    per_slot = [first_ping_at.count(t) for t in sorted(set(first_ping_at))]
    assert len(per_slot) == 8 and max(per_slot) < 100 / 8 * 2


# -- the timeout ------------------------------------------------------------------


@pytest.mark.parametrize("side", ["server", "client"])
def test_silent_peer_is_failed_with_1011_and_aborted_after_close_timeout(
    framing: str, side: str, logged: list[LogEvent]
) -> None:
    peer = open_peer(framing, side)
    peer.clock.advance(1.0)
    assert len(peer.pings()) == 1
    peer.clock.advance(0.49)
    assert peer.frames() == []
    peer.clock.advance(0.01)
    assert peer.frames() == [(CLOSE, TIMEOUT_CLOSE)]
    [warning] = [e for e in logged if e.get("keepalive_event") == "timeout"]
    assert warning["log_namespace"] == "twisted_keepalive"
    assert warning["log_level"].name == "warn"
    port = 40000 if side == "server" else 9000
    assert warning["peer"] == f"tcp4:127.0.0.1:{port}"
    assert warning["cause"] is Cause.PEER_SILENT
    assert warning["waited"] == pytest.approx(0.5)
    assert (warning["ping_interval"], warning["ping_timeout"], warning["close_timeout"]) == (
        1.0,
        0.5,
        2.0,
    )
    [timeout] = peer.events.timeouts
    assert timeout.cause is Cause.PEER_SILENT
    assert peer.keepalive.keepalive_timeout == timeout
    assert not peer.transport.aborted
    peer.clock.advance(1.99)
    assert not peer.transport.aborted
    peer.clock.advance(0.01)
    assert peer.transport.aborted
    [abort] = [e for e in logged if e.get("keepalive_event") == "abort"]
    assert abort["close_timeout"] == 2.0
    peer.lose(ConnectionAborted)
    assert peer.clock.getDelayedCalls() == []


def test_pong_just_before_the_deadline_keeps_the_connection(framing: str) -> None:
    peer = open_peer(framing)
    for _ in range(10):
        peer.clock.advance(1.0)
        [payload] = peer.pings()
        peer.clock.advance(0.49)
        peer.pong(payload)
    assert all(opcode != CLOSE for opcode, _ in peer.seen)
    assert peer.events.timeouts == []


def test_without_timeout_pings_continue_and_silence_never_fails(framing: str) -> None:
    peer = open_peer(framing, ping_timeout=None)
    pings = []
    for _ in range(100):
        peer.clock.advance(0.5)
        pings += peer.pings()
    assert len(pings) == 50
    assert len(set(pings)) == 50
    assert all(opcode == PING for opcode, _ in peer.seen)
    # The oldest unanswered keepalives are forgotten, the latest still count.
    peer.pong(pings[-MAX_UNANSWERED_KEEPALIVES])
    assert peer.keepalive.latency > 0.0
    peer.pong(pings[0])
    assert len(peer.events.latencies) == 1


def test_without_interval_no_pings_but_ping_still_works(framing: str) -> None:
    peer = open_peer(framing, ping_interval=None)
    peer.clock.advance(1000.0)
    assert peer.frames() == []
    assert peer.clock.getDelayedCalls() == []
    deferred = peer.keepalive.ping(b"hello")
    assert peer.pings() == [b"hello"]
    peer.clock.advance(0.25)
    peer.pong(b"hello")
    assert result_of(deferred) == pytest.approx(0.25)
    assert peer.keepalive.latency == pytest.approx(0.25)


def test_chatter_without_a_pong_does_not_stand_in_for_it(framing: str) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    peer.pings()
    for _ in range(5):
        peer.clock.advance(0.1)
        peer.receive(TEXT, b"busy")
    peer.clock.advance(0.05)
    assert CLOSE in opcodes(peer)
    assert peer.events.messages == ["busy"] * 5


# -- Pong matching -------------------------------------------------------------------


def test_pong_fires_its_ping_and_every_earlier_one_with_own_latency(framing: str) -> None:
    peer = open_peer(framing)
    first = peer.keepalive.ping(b"1")
    peer.clock.advance(0.1)
    second = peer.keepalive.ping(b"2")
    peer.clock.advance(0.1)
    third = peer.keepalive.ping(b"3")
    peer.clock.advance(0.1)
    peer.pong(b"2")
    assert result_of(first) == pytest.approx(0.3)
    assert result_of(second) == pytest.approx(0.2)
    assert not third.called
    peer.pong(b"3")
    assert result_of(third) == pytest.approx(0.1)
    # The application still sees every Pong.
    assert peer.events.pongs == [b"2", b"3"]


def test_unsolicited_and_unknown_pongs_are_ignored(framing: str) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    peer.pings()
    peer.pong(b"unsolicited")
    peer.pong(b"")
    peer.clock.advance(0.5)
    assert opcodes(peer) == [CLOSE]
    assert peer.keepalive.latency == 0.0


# -- ping() ---------------------------------------------------------------------------


def test_ping_without_data_uses_unique_payloads(framing: str) -> None:
    peer = open_peer(framing)
    for _ in range(20):
        peer.keepalive.ping()
    assert len(set(peer.pings())) == 20


def test_ping_encodes_str_as_utf8(framing: str) -> None:
    peer = open_peer(framing)
    peer.keepalive.ping("héllo")
    assert peer.pings() == ["héllo".encode()]


def test_ping_refuses_bad_data_at_once(framing: str) -> None:
    peer = open_peer(framing)
    with pytest.raises(ValueError, match="125 bytes"):
        peer.keepalive.ping(b"x" * 126)
    with pytest.raises(TypeError, match="bytes, str or None"):
        peer.keepalive.ping(42)
    peer.keepalive.ping(b"x" * 125)
    peer.keepalive.ping(b"same")
    with pytest.raises(PingInFlight, match="already waiting"):
        peer.keepalive.ping(b"same")
    assert peer.pings() == [b"x" * 125, b"same"]


def test_ping_on_closing_or_closed_connection_fails_instead_of_hanging(framing: str) -> None:
    peer = open_peer(framing)
    peer.close_ours(1000)
    failure = result_of(peer.keepalive.ping())
    assert isinstance(failure.value, ConnectionClosed)
    peer.lose()
    failure = result_of(peer.keepalive.ping())
    assert isinstance(failure.value, ConnectionClosed)


def test_cancelled_ping_stops_waiting_for_its_pong(framing: str) -> None:
    peer = open_peer(framing)
    deferred = peer.keepalive.ping(b"c")
    deferred.cancel()
    assert isinstance(result_of(deferred).value, CancelledError)
    peer.pong(b"c")
    assert peer.keepalive.latency == 0.0
    # The payload is free again.
    peer.keepalive.ping(b"c")


def test_ping_works_in_the_open_hook(framing: str) -> None:
    results: list[Deferred[float]] = []
    events = Events(on_open=lambda keepalive: results.append(keepalive.ping(b"hello")))
    peer = open_peer(framing, events=events)
    assert peer.pings() == [b"hello"]
    peer.clock.advance(0.125)
    peer.pong(b"hello")
    assert result_of(results[0]) == 0.125


def test_a_ping_callback_that_pings_again_gets_its_own_answer(framing: str) -> None:
    peer = open_peer(framing, ping_interval=None)
    second: list[Deferred[float]] = []
    first = peer.keepalive.ping(b"a")
    first.addCallback(lambda _: second.append(peer.keepalive.ping(b"a")))
    peer.pong(b"a")
    assert peer.pings() == [b"a", b"a"]
    peer.clock.advance(0.2)
    peer.pong(b"a")
    assert result_of(second[0]) == pytest.approx(0.2)


# -- the end ---------------------------------------------------------------------------


def test_timeout_fails_pending_pings_with_1011(framing: str) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    pending = peer.keepalive.ping(b"app")
    peer.clock.advance(0.5)
    failure = result_of(pending)
    assert (failure.value.code, failure.value.reason) == (1011, "keepalive ping timeout")
    peer.clock.advance(2.0)
    peer.lose()
    assert peer.clock.getDelayedCalls() == []


def test_an_errback_that_closes_the_connection_during_the_timeout_is_harmless(
    framing: str,
) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    pending = peer.keepalive.ping(b"app")
    seen: list[Failure] = []

    def close(failure: Failure) -> None:
        seen.append(failure)
        peer.close_ours(1000)
        peer.lose()

    pending.addErrback(close)
    peer.pings()
    peer.clock.advance(0.5)
    assert [f.value.code for f in seen] == [1011]
    assert opcodes(peer) == [CLOSE]
    assert peer.clock.getDelayedCalls() == []


def test_lost_connection_fails_pending_pings_and_leaves_no_timer(framing: str) -> None:
    peer = open_peer(framing)
    pending = peer.keepalive.ping()
    peer.clock.advance(0.5)
    peer.lose()
    assert peer.clock.getDelayedCalls() == []
    failure = result_of(pending)
    assert isinstance(failure.value, ConnectionClosed)
    assert failure.value.code == 1006


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ((1000).to_bytes(2, "big") + b"bye", "bye"),
        ((4000).to_bytes(2, "big") + "à bientôt".encode(), "à bientôt"),
        ((1001).to_bytes(2, "big"), "connection closed"),
    ],
)
def test_peer_close_fails_pending_pings_with_its_code_and_reason(
    framing: str, payload: bytes, reason: str
) -> None:
    peer = open_peer(framing)
    pending = peer.keepalive.ping(b"x")
    peer.clock.advance(1.0)
    peer.receive(CLOSE, payload)
    peer.lose()
    assert peer.clock.getDelayedCalls() == []
    failure = result_of(pending)
    assert isinstance(failure.value, ConnectionClosed)
    assert (failure.value.code, failure.value.reason) == (
        int.from_bytes(payload[:2], "big"),
        reason,
    )


# -- verdicts ---------------------------------------------------------------------------


def test_peer_sending_a_large_frame_is_not_failed_and_answers_after_it(framing: str) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    [payload] = peer.pings()
    big = frame(TEXT, b"x" * 100_000, masked=peer.masks)
    # The frame trickles in over 3 s, six times ping_timeout.
    for i in range(30):
        if i:
            peer.clock.advance(0.1)
        peer.deliver(big[i * len(big) // 30 : (i + 1) * len(big) // 30])
    assert all(opcode != CLOSE for opcode, _ in peer.frames())
    peer.pong(payload)
    assert peer.keepalive.latency == pytest.approx(2.9)
    messages = peer.events.messages
    if framing == "twisted" and (twisted_release.major, twisted_release.minor) < (26, 10):
        # Twisted before 26.10 hands a message over in the pieces it arrived
        # in, keepalive or not: the message is there, whole, all the same.
        messages = ["".join(messages)]
    assert messages == ["x" * 100_000]


def test_peer_that_stops_mid_frame_is_failed_ping_timeout_after_its_last_byte(
    framing: str,
) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    peer.pings()
    big = frame(TEXT, b"x" * 10_000, masked=peer.masks)
    peer.deliver(big[:5000])
    peer.clock.advance(0.4)
    peer.deliver(big[5000:6000])
    peer.clock.advance(0.4)
    assert peer.frames() == []
    # Due 0.5 s after the last byte, at most one 20 ms timer slot late.
    peer.clock.advance(0.12)
    assert opcodes(peer) == [CLOSE]
    assert peer.events.timeouts[0].cause is Cause.PEER_SILENT


def test_peer_trickling_one_frame_forever_is_failed_at_the_grace_limit(framing: str) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    peer.pings()
    big = frame(TEXT, b"x" * 100_000, masked=peer.masks)
    sent = 0
    while CLOSE not in opcodes(peer):
        peer.deliver(big[sent : sent + 10])
        sent += 10
        peer.clock.advance(0.1)
    # Ten ping_timeouts after the Ping, at most a slot and a step late.
    assert peer.clock.seconds() - 1.0 == pytest.approx(5.0, abs=0.13)
    assert peer.events.timeouts[0].cause is Cause.PEER_TOO_SLOW


# -- counters ------------------------------------------------------------------------


def test_counters_see_every_connection_ping_pong_and_timeout(framing: str) -> None:
    peer = open_peer(framing, stats=True)
    stats = peer.stats
    peer.clock.advance(1.0)
    [payload] = peer.pings()
    peer.clock.advance(0.1)
    peer.pong(payload)
    peer.keepalive.ping(b"app")
    peer.clock.advance(0.9)
    peer.clock.advance(0.5)
    peer.lose()
    assert (stats.opened, stats.closed, stats.open) == (1, 1, 0)
    assert stats.pings_sent == 3
    assert stats.pongs_received == 1
    assert stats.timeouts[Cause.PEER_SILENT] == 1
    assert sum(stats.latency_counts) == 1
    assert sum(stats.lateness_counts) == 2


# -- browser heartbeat ---------------------------------------------------------------------


def test_browser_heartbeats_are_answered_and_kept_from_the_application(framing: str) -> None:
    peer = open_peer(framing, browser_heartbeat=True)
    peer.receive(TEXT, b"\x00wsk1 ping 17")
    peer.receive(TEXT, b"hello")
    peer.receive(TEXT, b"\x00wsk1 ping bad token!")
    peer.receive(TEXT, b"\x00wsk9 future")
    assert peer.frames() == [(TEXT, b"\x00wsk1 pong 17")]
    assert peer.events.messages == ["hello"]


def test_browser_heartbeats_are_ordinary_messages_unless_opted_in(framing: str) -> None:
    peer = open_peer(framing)
    peer.receive(TEXT, b"\x00wsk1 ping 17")
    assert peer.frames() == []
    assert peer.events.messages == ["\x00wsk1 ping 17"]
