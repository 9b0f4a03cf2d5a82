"""
KeepaliveMixin on real Autobahn protocols over an in-memory transport, driven
by ``task.Clock``: every assertion is about frames on the wire, Deferreds, or
timers left behind.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent
from twisted.python.failure import Failure

from twisted_keepalive import (
    ConnectionClosed,
    KeepaliveMixin,
    PingInFlight,
    set_keepalive_options,
)
from twisted_keepalive.core.heartbeat import MAX_UNANSWERED_KEEPALIVES

from .wire import CLOSE, PING, TEXT, EchoClient, EchoServer, open_client, open_server, result_of

# -- 1. schedule -------------------------------------------------------------


def test_pings_go_out_every_interval_after_the_handshake() -> None:
    peer = open_server(EchoServer)
    times = []
    for _ in range(36):
        peer.clock.advance(0.125)
        for payload in peer.pings():
            times.append(peer.clock.seconds())
            peer.pong(payload)
    assert times == [1.0, 2.0, 3.0, 4.0]


def test_next_ping_is_measured_ping_to_ping_less_latency() -> None:
    peer = open_server(EchoServer)
    peer.clock.advance(1.0)
    [payload] = peer.pings()
    peer.clock.advance(0.3)
    peer.pong(payload)
    assert peer.protocol.latency == pytest.approx(0.3)
    peer.clock.advance(0.69)
    assert peer.pings() == []
    peer.clock.advance(0.01)
    assert len(peer.pings()) == 1


def test_only_one_keepalive_ping_is_in_flight() -> None:
    class Patient(EchoServer):
        ping_interval = 1.0
        ping_timeout = 5.0

    peer = open_server(Patient)
    peer.clock.advance(1.0)
    assert len(peer.pings()) == 1
    peer.clock.advance(3.0)
    assert peer.pings() == []


def test_client_protocol_pings_with_masked_frames() -> None:
    peer = open_client(EchoClient)
    peer.clock.advance(1.0)
    raw = peer.transport.value()
    assert raw[0] == 0x80 | PING and raw[1] & 0x80, "client frames must be masked"
    [payload] = peer.pings()
    peer.clock.advance(0.1)
    peer.pong(payload)
    assert peer.protocol.latency == pytest.approx(0.1)


# -- 2. timeout ----------------------------------------------------------------


def test_silent_peer_is_failed_with_1011_and_aborted_after_close_timeout(
    logged: list[LogEvent],
) -> None:
    peer = open_server(EchoServer, closeHandshakeTimeout=0)
    peer.clock.advance(1.0)
    assert len(peer.pings()) == 1
    peer.clock.advance(0.49)
    assert peer.frames() == []
    peer.clock.advance(0.01)
    [(opcode, payload)] = peer.frames()
    assert opcode == CLOSE
    assert payload == (1011).to_bytes(2, "big") + b"keepalive ping timeout"
    [warning] = [e for e in logged if e.get("keepalive_event") == "timeout"]
    assert warning["log_level"].name == "warn"
    assert warning["peer"] == "tcp4:127.0.0.1:40000"
    assert warning["ping_timeout"] == 0.5
    assert warning["waited"] == pytest.approx(0.5)
    assert warning["cause"].value == "peer_silent"
    assert not peer.transport.aborted
    peer.clock.advance(2.0)
    assert peer.transport.aborted


def test_peer_that_answers_the_close_is_not_aborted() -> None:
    closes: list[tuple[bool, int, str]] = []

    class Recorder(EchoServer):
        def onClose(self, wasClean: bool, code: int, reason: str) -> None:
            closes.append((wasClean, code, reason))

    peer = open_server(Recorder, closeHandshakeTimeout=0)
    peer.clock.advance(1.0)
    peer.clock.advance(0.5)
    assert peer.frames()[-1][0] == CLOSE
    peer.receive(CLOSE, (1011).to_bytes(2, "big"))
    peer.lose()
    assert closes == [(True, 1011, None)]
    # Our abort timer is gone with the connection.
    assert peer.clock.getDelayedCalls() == []


def test_aborted_connection_reports_the_keepalive_timeout_to_on_close() -> None:
    closes: list[tuple[bool, int, str]] = []

    class Recorder(EchoServer):
        def onClose(self, wasClean: bool, code: int, reason: str) -> None:
            closes.append((wasClean, code, reason))

    peer = open_server(Recorder, closeHandshakeTimeout=0)
    peer.clock.advance(1.0)
    peer.clock.advance(0.5)
    peer.clock.advance(2.0)
    assert peer.transport.aborted
    from twisted.internet.error import ConnectionAborted

    peer.lose(ConnectionAborted)
    [(was_clean, code, reason)] = closes
    assert (was_clean, code) == (False, 1006)
    assert reason == 'connection was closed uncleanly ("keepalive ping timeout")'


def test_pong_just_before_the_deadline_keeps_the_connection() -> None:
    peer = open_server(EchoServer)
    for _ in range(10):
        peer.clock.advance(1.0)
        [payload] = peer.pings()
        peer.clock.advance(0.49)
        peer.pong(payload)
    assert all(opcode != CLOSE for opcode, _ in peer.seen)


# -- 3. None disables ------------------------------------------------------------


def test_without_timeout_pings_continue_and_silence_never_fails() -> None:
    class NoTimeout(EchoServer):
        ping_timeout = None

    peer = open_server(NoTimeout)
    pings = []
    for _ in range(100):
        peer.clock.advance(0.5)
        pings += peer.pings()
    assert len(pings) == 50
    assert len(set(pings)) == 50
    assert all(opcode == PING for opcode, _ in peer.seen)
    # Unanswered keepalive pings are not remembered forever.
    assert peer.protocol._keepalive_link.heartbeat.in_flight == MAX_UNANSWERED_KEEPALIVES


def test_without_interval_no_pings_but_ping_still_works() -> None:
    class NoKeepalive(EchoServer):
        ping_interval = None

    peer = open_server(NoKeepalive)
    peer.clock.advance(1000.0)
    assert peer.frames() == []
    assert peer.clock.getDelayedCalls() == []
    deferred = peer.protocol.ping(b"hello")
    assert peer.pings() == [b"hello"]
    peer.clock.advance(0.25)
    peer.pong(b"hello")
    assert result_of(deferred) == pytest.approx(0.25)
    assert peer.protocol.latency == pytest.approx(0.25)


# -- 4. pong matching --------------------------------------------------------------


def test_pong_fires_its_ping_and_every_earlier_one_with_own_latency() -> None:
    peer = open_server(EchoServer)
    first = peer.protocol.ping(b"1")
    peer.clock.advance(0.1)
    second = peer.protocol.ping(b"2")
    peer.clock.advance(0.1)
    third = peer.protocol.ping(b"3")
    peer.clock.advance(0.1)
    peer.pong(b"2")
    assert result_of(first) == pytest.approx(0.3)
    assert result_of(second) == pytest.approx(0.2)
    assert not third.called
    peer.pong(b"3")
    assert result_of(third) == pytest.approx(0.1)


def test_unsolicited_and_unknown_pongs_are_ignored() -> None:
    peer = open_server(EchoServer)
    peer.clock.advance(1.0)
    peer.pings()
    peer.pong(b"unsolicited")
    peer.pong(b"")
    peer.clock.advance(0.5)
    assert [opcode for opcode, _ in peer.frames()] == [CLOSE]
    assert peer.protocol.latency == 0.0


# -- 5. cleanup --------------------------------------------------------------------


def test_close_cancels_every_timer_and_fails_pending_pings() -> None:
    peer = open_server(EchoServer)
    pending = peer.protocol.ping(b"x")
    peer.clock.advance(1.0)
    assert peer.clock.getDelayedCalls()
    peer.receive(CLOSE, (1000).to_bytes(2, "big") + b"bye")
    peer.lose()
    assert peer.clock.getDelayedCalls() == []
    failure = result_of(pending)
    assert isinstance(failure, Failure)
    assert isinstance(failure.value, ConnectionClosed)
    assert failure.value.code == 1000
    assert failure.value.reason == "bye"


def test_lost_connection_without_handshake_leaves_no_timer() -> None:
    peer = open_server(EchoServer)
    pending = peer.protocol.ping()
    peer.lose()
    assert peer.clock.getDelayedCalls() == []
    failure = result_of(pending)
    assert isinstance(failure.value, ConnectionClosed)
    assert failure.value.code == 1006


def test_timeout_fails_pending_pings_with_1011() -> None:
    peer = open_server(EchoServer, closeHandshakeTimeout=0)
    peer.clock.advance(1.0)
    pending = peer.protocol.ping(b"app")
    peer.clock.advance(0.5)
    failure = result_of(pending)
    assert failure.value.code == 1011
    assert failure.value.reason == "keepalive ping timeout"
    peer.clock.advance(2.0)
    peer.lose()
    assert peer.clock.getDelayedCalls() == []


# -- ping() ------------------------------------------------------------------------


def test_ping_without_data_uses_unique_payloads() -> None:
    peer = open_server(EchoServer)
    for _ in range(20):
        peer.protocol.ping()
    payloads = peer.pings()
    assert len(set(payloads)) == 20


def test_ping_encodes_str_as_utf8() -> None:
    peer = open_server(EchoServer)
    peer.protocol.ping("héllo")
    assert peer.pings() == ["héllo".encode()]


def test_ping_refuses_bad_data_at_once() -> None:
    peer = open_server(EchoServer)
    with pytest.raises(ValueError, match="125 bytes"):
        peer.protocol.ping(b"x" * 126)
    with pytest.raises(TypeError, match="bytes, str or None"):
        peer.protocol.ping(42)
    peer.protocol.ping(b"x" * 125)
    peer.protocol.ping(b"same")
    with pytest.raises(PingInFlight, match="already waiting"):
        peer.protocol.ping(b"same")


def test_ping_on_closing_or_closed_connection_fails_instead_of_hanging() -> None:
    peer = open_server(EchoServer)
    peer.protocol.sendClose(1000)
    failure = result_of(peer.protocol.ping())
    assert isinstance(failure.value, ConnectionClosed)
    peer.lose()
    failure = result_of(peer.protocol.ping())
    assert isinstance(failure.value, ConnectionClosed)


def test_cancelled_ping_stops_waiting_for_its_pong() -> None:
    peer = open_server(EchoServer)
    deferred = peer.protocol.ping(b"c")
    deferred.cancel()
    assert isinstance(result_of(deferred).value, CancelledError)
    peer.pong(b"c")
    # The payload is free again.
    peer.protocol.ping(b"c")


# -- 6. protocols that never call super() -------------------------------------------


def test_protocols_overriding_hooks_without_super_still_get_keepalive() -> None:
    seen: list[Any] = []

    class Legacy(KeepaliveMixin, WebSocketServerProtocol):
        ping_interval = 1.0
        ping_timeout = 0.5

        def onOpen(self) -> None:
            seen.append("open")

        def onPong(self, payload: bytes) -> None:
            seen.append(payload)

        def onClose(self, wasClean: bool, code: int, reason: str) -> None:
            seen.append("close")

    peer = open_server(Legacy)
    peer.clock.advance(1.0)
    [payload] = peer.pings()
    peer.clock.advance(0.2)
    peer.pong(payload)
    assert peer.protocol.latency == pytest.approx(0.2)
    pending = peer.protocol.ping()
    peer.lose()
    assert seen == ["open", payload, "close"]
    assert isinstance(result_of(pending).value, ConnectionClosed)
    assert peer.clock.getDelayedCalls() == []


def test_settings_assigned_in_on_open_apply() -> None:
    class Tuned(EchoServer):
        def onOpen(self) -> None:
            self.ping_interval = 3.0

    peer = open_server(Tuned)
    peer.clock.advance(2.9)
    assert peer.pings() == []
    peer.clock.advance(0.1)
    assert len(peer.pings()) == 1


# -- 7. Autobahn's own auto-ping --------------------------------------------------------


def test_autobahn_autoping_is_disabled_with_a_warning(logged: list[LogEvent]) -> None:
    peer = open_server(EchoServer, autoPingInterval=0.3, autoPingTimeout=0.2)
    assert peer.protocol.autoPingInterval == 0
    assert peer.protocol.autoPingPendingCall is None
    assert any("autoPingInterval" in (e.get("log_format") or "") for e in logged)


def test_set_keepalive_options_refuses_a_factory_with_autoping() -> None:
    def setup(factory: Any) -> None:
        set_keepalive_options(factory, ping_interval=1.0)

    with pytest.raises(ValueError, match="autoPingInterval"):
        open_server(EchoServer, autoPingInterval=5, factory_setup=setup)


# -- configuration -----------------------------------------------------------------------


def test_factory_options_override_class_and_instance_overrides_factory() -> None:
    peer = open_server(
        EchoServer,
        factory_setup=lambda f: set_keepalive_options(f, ping_interval=2.0, ping_timeout=None),
    )
    assert peer.protocol.ping_interval == 2.0
    assert peer.protocol.ping_timeout is None
    assert peer.protocol.close_timeout == 2.0  # from the class: not given to the factory
    peer.clock.advance(1.9)
    assert peer.pings() == []
    peer.clock.advance(0.1)
    assert len(peer.pings()) == 1
    peer.protocol.ping_interval = 7.0
    assert peer.protocol.ping_interval == 7.0
    del peer.protocol.ping_interval
    assert peer.protocol.ping_interval == 2.0


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, ValueError),
        (0, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("5", TypeError),
        (True, TypeError),
    ],
)
def test_bad_settings_fail_early_naming_the_setting(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"Bad\.ping_interval must be a positive number"):
        type("Bad", (EchoServer,), {"ping_interval": value})
    peer = open_server(EchoServer)
    with pytest.raises(error, match="ping_timeout must be"):
        peer.protocol.ping_timeout = value
    with pytest.raises(error, match="close_timeout must be"):
        set_keepalive_options(peer.protocol.factory, close_timeout=value)


def test_close_timeout_cannot_be_none_and_unknown_options_are_refused() -> None:
    with pytest.raises(TypeError, match="close_timeout must be a positive number of seconds, not"):
        type("Bad", (EchoServer,), {"close_timeout": None})
    with pytest.raises(TypeError, match="unknown keepalive setting 'ping_intervall'"):
        set_keepalive_options(object(), ping_intervall=1.0)


def test_an_injected_clock_wins_over_the_factory_reactor() -> None:
    reactor_clock = Clock()

    def setup(factory: Any) -> None:
        factory.reactor = reactor_clock

    peer = open_server(EchoServer, Clock(), factory_setup=setup)
    reactor_clock.advance(30)
    assert peer.pings() == []
    peer.clock.advance(1.0)
    assert len(peer.pings()) == 1


def test_ping_works_inside_on_open() -> None:
    results: list[Deferred[float]] = []

    class Eager(EchoServer):
        def onOpen(self) -> None:
            results.append(self.ping(b"hello"))

    peer = open_server(Eager)
    assert peer.pings() == [b"hello"]
    peer.clock.advance(0.125)
    peer.pong(b"hello")
    assert result_of(results[0]) == 0.125


def test_first_pings_of_simultaneous_connections_spread_over_the_interval() -> None:
    class Spread(EchoServer):
        first_ping_spread = 1.0

    clock = Clock()
    random.seed(20261125)  # the spread is random; the test must not be
    peers = [open_server(Spread, clock) for _ in range(200)]
    first_ping_at: list[float] = []
    for _ in range(8):
        clock.advance(0.125)
        first_ping_at += [clock.seconds() for peer in peers if peer.pings()]
    assert len(first_ping_at) == 200, "every first ping within one interval"
    per_slot = [first_ping_at.count(t) for t in sorted(set(first_ping_at))]
    # Without the spread all 200 would land in the last slot.
    assert len(per_slot) == 8 and max(per_slot) < 200 / 8 * 2


def test_first_ping_spread_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="first_ping_spread must be a number from 0 to 1"):
        type("Bad", (EchoServer,), {"first_ping_spread": 1.5})
    with pytest.raises(TypeError, match="first_ping_spread must be a number from 0 to 1"):
        set_keepalive_options(object(), first_ping_spread=None)


# -- browser heartbeat ---------------------------------------------------------------------


def test_browser_heartbeats_are_answered_and_kept_from_on_message() -> None:
    messages: list[bytes] = []

    class Page(EchoServer):
        browser_heartbeat = True

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            messages.append(payload)

    peer = open_server(Page)
    peer.receive(TEXT, b"\x00wsk1 ping 17")
    peer.receive(TEXT, b"hello")
    peer.receive(TEXT, b"\x00wsk1 ping bad token!")
    peer.receive(TEXT, b"\x00wsk9 future")
    assert peer.frames() == [(TEXT, b"\x00wsk1 pong 17")]
    assert messages == [b"hello"]


def test_browser_heartbeats_are_ordinary_messages_unless_opted_in() -> None:
    messages: list[bytes] = []

    class Plain(EchoServer):
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            messages.append(payload)

    peer = open_server(Plain)
    peer.receive(TEXT, b"\x00wsk1 ping 17")
    assert peer.frames() == []
    assert messages == [b"\x00wsk1 ping 17"]


def test_browser_heartbeat_setting_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="browser_heartbeat must be True or False"):
        type("Bad", (EchoServer,), {"browser_heartbeat": "yes"})


def test_close_timeout_is_the_bound_not_autobahns_whole_second_timer() -> None:
    peer = open_server(EchoServer)  # Autobahn's closeHandshakeTimeout left at its 1 s
    peer.clock.advance(1.0)
    peer.clock.advance(0.5)
    assert peer.frames()[-1][0] == CLOSE
    assert peer.protocol.closeHandshakeTimeoutCall is None
    assert peer.protocol.keepalive_timeout is not None
    peer.clock.advance(1.99)
    assert not peer.transport.aborted
    peer.clock.advance(0.01)
    assert peer.transport.aborted
