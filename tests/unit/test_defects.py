"""
Regression tests for the defects of issue 13, on the in-memory wire
(``tests/unit/wire.py``) and ``task.Clock``.

Every assertion is about the public API (settings, ``ping()``, ``latency``,
``onLatency``, ``onKeepaliveTimeout``, ``onClose``, ``TypeError`` /
``ValueError``) or bytes on the wire, never the mixin's internals.  Keepalive
deadlines may run on a 20 ms grid, never early and at most 20 ms late, so
clock assertions leave 50 ms past a deadline and compare times with
``abs=0.03``.

Defect 1 (a peer's Ping parked behind more than 64 KiB of our own unsent data)
needs Twisted's real write buffer, which ``StringTransport`` does not have: it
is tested over real sockets in ``tests/interop/test_defects_real.py``, as is
the ``twistd`` side of defects 2 and 4.
"""

from __future__ import annotations

import functools
import gc
import random
from collections.abc import Iterator
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionAborted
from twisted.logger import LogEvent
from twisted.python.failure import Failure

from twisted_keepalive import ConnectionClosed, KeepaliveMixin, set_keepalive_options

from .defect_support import Outcomes, client_frames, errors_in, raised_by, unmask
from .wire import CLOSE, PING, TEXT, EchoClient, EchoServer, Peer, frame, open_client, open_server

#: Seconds past a deadline before looking: the timer grid may run it 20 ms late.
SLACK = 0.05

TIMEOUT_CLOSE = (1011).to_bytes(2, "big") + b"keepalive ping timeout"


@pytest.fixture
def restore_random() -> Iterator[None]:
    state = random.getstate()
    yield
    random.setstate(state)


def advance(peer: Peer, seconds: float, step: float = 0.01) -> None:
    """
    Advance the test clock by ``seconds``, ``step`` at a time as a reactor
    would (``Clock.advance`` runs every due call at the *new* time, so one
    big advance would send a Ping late and move its deadline); a timer that
    raises fails the test with its error.
    """
    target = peer.clock.seconds() + seconds
    while (left := target - peer.clock.seconds()) > 1e-9:
        error = raised_by(functools.partial(peer.clock.advance, min(step, left)))
        if error is not None:
            pytest.fail(f"a keepalive timer raised {error!r}")


class Closes(EchoServer):
    """EchoServer that remembers what ``onClose`` and ``onKeepaliveTimeout`` got."""

    def onOpen(self) -> None:
        self.closes: list[tuple[bool, int | None, str | None]] = []
        self.timeouts: list[Any] = []
        self.latencies: list[float] = []

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closes.append((wasClean, code, reason))

    def onKeepaliveTimeout(self, timeout: Any) -> None:
        self.timeouts.append(timeout)

    def onLatency(self, latency: float) -> None:
        self.latencies.append(latency)


def cancel_each_other(protocol: Any, outcomes: Outcomes) -> None:
    """Two pending pings, ``a`` and ``b``, whichever settles first cancels the other."""
    a = protocol.ping(b"a")
    b = protocol.ping(b"b")
    outcomes.watch("a", a, then=b.cancel)
    outcomes.watch("b", b, then=a.cancel)


def kinds(outcomes: Outcomes) -> list[type]:
    found = []
    for name in ("a", "b"):
        result = outcomes.only(name)
        assert isinstance(result, Failure), (name, result)
        found.append(type(result.value))
    return found


# -- 2. the mixin after the Autobahn base -------------------------------------------


@pytest.mark.parametrize("base", [WebSocketServerProtocol, WebSocketClientProtocol])
def test_mixin_listed_after_the_autobahn_base_is_refused_when_the_class_is_created(
    base: type,
) -> None:
    with pytest.raises(TypeError) as refused:
        type("Chat", (base, KeepaliveMixin), {"ping_interval": 1.0})
    message = str(refused.value)
    assert "KeepaliveMixin" in message
    assert "first" in message, f"the message does not say how to fix it: {message}"


# -- 3. re-entrant errbacks and callbacks -------------------------------------------


def test_timeout_fails_the_connection_when_a_pending_pings_errback_cancels_another(
    logged: list[LogEvent],
) -> None:
    peer = open_server(Closes, closeHandshakeTimeout=0)
    outcomes = Outcomes()
    cancel_each_other(peer.protocol, outcomes)
    # A silent peer: the keepalive Ping at 1.0 s is never answered.
    advance(peer, 1.0 + 0.5 + SLACK)
    frames = peer.frames()
    assert frames[-1] == (CLOSE, TIMEOUT_CLOSE), frames
    assert len(peer.protocol.timeouts) == 1
    assert set(kinds(outcomes)) == {CancelledError, ConnectionClosed}
    closed = next(
        outcomes.only(n).value
        for n in ("a", "b")
        if isinstance(outcomes.only(n).value, ConnectionClosed)
    )
    assert (closed.code, closed.reason) == (1011, "keepalive ping timeout")
    advance(peer, 2.0 - 2 * SLACK)
    assert not peer.transport.aborted
    advance(peer, 3 * SLACK)
    assert peer.transport.aborted, "the dead connection was not aborted close_timeout later"
    peer.lose(ConnectionAborted)
    assert len(peer.protocol.timeouts) == 1
    kinds(outcomes)  # still exactly once each
    gc.collect()  # an unhandled Deferred failure is logged when it is collected
    assert errors_in(logged) == []


def test_on_close_runs_when_the_peer_closes_while_pending_pings_cancel_each_other(
    logged: list[LogEvent],
) -> None:
    peer = open_server(Closes, closeHandshakeTimeout=0)
    outcomes = Outcomes()
    cancel_each_other(peer.protocol, outcomes)
    peer.receive(CLOSE, (1000).to_bytes(2, "big") + b"bye")
    error = raised_by(peer.lose)
    assert peer.protocol.closes == [(True, 1000, "bye")], (
        f"onClose did not run as it should; the close path raised {error!r}"
    )
    assert error is None
    assert set(kinds(outcomes)) == {CancelledError, ConnectionClosed}
    gc.collect()
    assert errors_in(logged) == []


class NoKeepalive(Closes):
    ping_interval = None


def test_a_callback_repinging_with_an_acknowledged_payload_leaves_both_pings_answered() -> None:
    peer = open_server(NoKeepalive)
    protocol = peer.protocol
    outcomes = Outcomes()
    again: list[Deferred[float]] = []
    a = protocol.ping(b"a")
    advance(peer, 0.1)
    b = protocol.ping(b"b")
    advance(peer, 0.1)

    def ping_b_again() -> None:
        again.append(protocol.ping(b"b"))
        outcomes.watch("b again", again[0])

    outcomes.watch("a", a, then=ping_b_again)
    outcomes.watch("b", b)
    peer.pong(b"b")  # acknowledges a and b
    assert outcomes.only("a") == pytest.approx(0.2, abs=0.03)
    assert outcomes.results["b"], "the first b Deferred never fired"
    assert outcomes.only("b") == pytest.approx(0.1, abs=0.03)
    assert outcomes.results["b again"] == [], "the new b Ping fired with the old Pong"
    advance(peer, 0.3)
    peer.pong(b"b")
    assert outcomes.only("b again") == pytest.approx(0.3, abs=0.03)
    assert outcomes.only("a") == pytest.approx(0.2, abs=0.03)
    assert outcomes.only("b") == pytest.approx(0.1, abs=0.03)


def test_a_callback_repinging_with_an_acknowledged_payload_fails_the_new_ping_on_close() -> None:
    peer = open_server(NoKeepalive, closeHandshakeTimeout=0)
    protocol = peer.protocol
    outcomes = Outcomes()
    a = protocol.ping(b"a")
    b = protocol.ping(b"b")
    outcomes.watch("a", a, then=lambda: outcomes.watch("b again", protocol.ping(b"b")))
    outcomes.watch("b", b)
    advance(peer, 0.1)
    peer.pong(b"b")
    assert outcomes.results["b"], "the first b Deferred never fired"
    assert outcomes.only("b") == pytest.approx(0.1, abs=0.03)
    peer.receive(CLOSE, (1000).to_bytes(2, "big"))
    peer.lose()
    failure = outcomes.only("b again")
    assert isinstance(failure, Failure) and isinstance(failure.value, ConnectionClosed)
    assert outcomes.only("a") == pytest.approx(0.1, abs=0.03)
    assert outcomes.only("b") == pytest.approx(0.1, abs=0.03)


# -- 4. a browser heartbeat that crosses our Close ------------------------------------


class Page(Closes):
    browser_heartbeat = True


def test_browser_heartbeat_crossing_our_close_is_dropped_and_the_close_completes(
    logged: list[LogEvent],
) -> None:
    peer = open_server(Page, closeHandshakeTimeout=0)
    peer.protocol.sendClose(1000)
    assert [opcode for opcode, _ in peer.frames()] == [CLOSE]
    # The page's heartbeat was on its way; then it answers our Close.
    error = raised_by(
        lambda: peer.protocol.dataReceived(
            frame(TEXT, b"\x00wsk1 ping abc") + frame(CLOSE, (1000).to_bytes(2, "big"))
        )
    )
    assert error is None, f"reading the heartbeat and the Close reply raised {error!r}"
    assert peer.frames() == [], "something was sent after our Close"
    peer.lose()
    assert peer.protocol.closes == [(True, 1000, None)]
    assert errors_in(logged) == []


def test_browser_heartbeat_crossing_a_keepalive_timeout_close_is_dropped(
    logged: list[LogEvent],
) -> None:
    peer = open_server(Page, closeHandshakeTimeout=0)
    advance(peer, 1.0 + 0.5 + SLACK)
    assert peer.frames()[-1] == (CLOSE, TIMEOUT_CLOSE)
    error = raised_by(
        lambda: peer.protocol.dataReceived(
            frame(TEXT, b"\x00wsk1 ping abc") + frame(CLOSE, (1011).to_bytes(2, "big"))
        )
    )
    assert error is None, f"reading the heartbeat and the Close reply raised {error!r}"
    assert peer.frames() == [], "something was sent after our Close"
    peer.lose()
    assert peer.protocol.closes == [(True, 1011, None)]
    assert peer.clock.getDelayedCalls() == []  # no abort left to come
    assert errors_in(logged) == []


# -- 5. class attributes assigned after the class statement ---------------------------


def test_class_setting_assigned_after_the_class_statement_is_validated() -> None:
    class Chat(EchoServer):
        pass

    with pytest.raises(ValueError, match="ping_interval"):
        Chat.ping_interval = -1


def test_instance_settings_stay_validated_after_a_class_assignment() -> None:
    class Chat(EchoServer):
        pass

    Chat.ping_interval = 5.0
    peer = open_server(Chat)
    with pytest.raises(ValueError, match="ping_interval"):
        peer.protocol.ping_interval = -1


def test_factory_options_outrank_a_class_setting_assigned_after_the_class_statement() -> None:
    class Chat(EchoServer):
        pass

    Chat.ping_interval = 5.0  # as main() would, from its configuration
    peer = open_server(Chat, factory_setup=lambda f: set_keepalive_options(f, ping_interval=2.0))
    ping_times = []
    for _ in range(650):  # 6.5 s
        advance(peer, 0.01)
        for payload in peer.pings():
            ping_times.append(peer.clock.seconds())
            peer.pong(payload)
    assert ping_times == pytest.approx([2.0, 4.0, 6.0], abs=0.03 + 0.01)


# -- 6. a slow Pong with ping_timeout=None ------------------------------------------------


class SlowPeerNoTimeout(Closes):
    ping_interval = 1.0
    ping_timeout = None


def test_pong_slower_than_the_interval_counts_when_ping_timeout_is_none() -> None:
    peer = open_server(SlowPeerNoTimeout)
    answer_at: list[tuple[float, bytes]] = []
    seen_closes = []
    for _ in range(800):  # 8 s
        advance(peer, 0.01)
        now = peer.clock.seconds()
        for opcode, payload in peer.frames():
            if opcode == PING:
                answer_at.append((now + 2.5, payload))
            elif opcode == CLOSE:
                seen_closes.append(payload)
        while answer_at and answer_at[0][0] <= now + 1e-9:
            _, payload = answer_at.pop(0)
            peer.pong(payload)
    protocol = peer.protocol
    assert protocol.latency == pytest.approx(2.5, abs=0.03)
    assert protocol.latencies, "onLatency never fired"
    assert protocol.latencies == pytest.approx([2.5] * len(protocol.latencies), abs=0.03)
    assert seen_closes == [] and protocol.keepalive_timeout is None
    assert protocol.closes == [] and not peer.transport.aborted


# -- 7a. a finite but absurd duration -------------------------------------------------------


@pytest.mark.parametrize("setting", ["ping_interval", "ping_timeout", "close_timeout"])
def test_a_duration_beyond_any_timer_is_refused_when_set_and_a_day_is_fine(setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        type("Huge", (EchoServer,), {setting: 1e307})
    peer = open_server(EchoServer)
    with pytest.raises(ValueError, match=setting):
        setattr(peer.protocol, setting, 1e307)
    with pytest.raises(ValueError, match=setting):
        set_keepalive_options(peer.protocol.factory, **{setting: 1e307})
    # A day is a long interval, not an absurd one.
    day = 86400.0
    Day = type("Day", (Closes,), {setting: day})
    peer = open_server(Day, factory_setup=lambda f: set_keepalive_options(f, **{setting: day}))
    setattr(peer.protocol, setting, day)
    assert getattr(peer.protocol, setting) == day
    advance(peer, 0.5)
    pending = peer.protocol.ping(b"day")
    advance(peer, 0.25)
    peer.pong(b"day")
    outcomes = Outcomes()
    outcomes.watch("day", pending)
    assert outcomes.only("day") == pytest.approx(0.25, abs=0.03)
    peer.receive(CLOSE, (1000).to_bytes(2, "big"))
    peer.lose()
    assert peer.protocol.closes == [(True, 1000, None)]
    assert peer.clock.getDelayedCalls() == []


# -- 7b. client masks from a strong source of entropy ----------------------------------------


def _keepalive_ping_masks(seed: int) -> list[bytes]:
    peer = open_client(EchoClient)
    # Autobahn's factory reseeds random from the OS when it is made; seed
    # after it, as any application may (a simulation, a test, a game).
    random.seed(seed)
    masks = []
    for _ in range(3):
        advance(peer, 1.0 + SLACK)
        for opcode, key, payload in client_frames(peer.transport.value()):
            if opcode == PING:
                masks.append(key)
                peer.transport.clear()
                peer.pong(unmask(key, payload))
    assert len(masks) == 3
    return masks


@pytest.mark.usefixtures("restore_random")
def test_client_ping_mask_keys_do_not_come_from_the_random_module() -> None:
    first = _keepalive_ping_masks(1234)
    second = _keepalive_ping_masks(1234)
    assert first != second, (
        f"the same mask keys after reseeding random: {[k.hex() for k in first]} "
        "(RFC 6455 5.3 asks for a strong source of entropy)"
    )


def _application_ping_masks(seed: int) -> list[bytes]:
    peer = open_client(EchoClient)
    random.seed(seed)
    masks = []
    for payload in (b"one", b"two", b"three and more"):
        peer.transport.clear()
        waiter = peer.protocol.ping(payload)
        [(opcode, key, masked)] = client_frames(peer.transport.value())
        assert opcode == PING and unmask(key, masked) == payload
        masks.append(key)
        peer.pong(payload)
        assert waiter.called
    return masks


@pytest.mark.usefixtures("restore_random")
def test_client_application_ping_mask_keys_do_not_come_from_the_random_module() -> None:
    assert _application_ping_masks(99) != _application_ping_masks(99)
