"""
Regression tests for the defects of issue 13, on the in-memory wire
(``tests/unit/wire.py``) and ``task.Clock``.

Every assertion is about the public API (settings, ``ping()``, ``latency``,
``onLatency``, ``onKeepaliveTimeout``, ``onClose``, ``TypeError`` /
``ValueError``) or bytes on the wire, never the mixin's internals.  Keepalive
deadlines may run on a 20 ms grid, never early and at most 20 ms late, so
clock assertions leave 50 ms past a deadline and compare times with
``abs=0.03``.

Defects 3 (re-entrant errbacks), 4 (a browser heartbeat crossing our Close),
6 (a slow Pong with ``ping_timeout=None``) and 7b (client masks) apply to
both framings: they are tested on both in ``test_behaviour_edges.py``.

Defect 1 (a peer's Ping parked behind more than 64 KiB of our own unsent data)
needs Twisted's real write buffer, which ``StringTransport`` does not have: it
is tested over real sockets in ``tests/interop/test_defects_real.py``, as is
the ``twistd`` side of defects 2 and 4.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol
from twisted.internet.defer import Deferred

from twisted_keepalive import KeepaliveMixin, set_keepalive_options

from .defect_support import Outcomes, raised_by
from .wire import CLOSE, EchoServer, Peer, open_server

#: Seconds past a deadline before looking: the timer grid may run it 20 ms late.
SLACK = 0.05

TIMEOUT_CLOSE = (1011).to_bytes(2, "big") + b"keepalive ping timeout"


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
