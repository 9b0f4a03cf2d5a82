"""
KeepaliveMixin on real Autobahn protocols over an in-memory transport, driven
by ``task.Clock``: what only Autobahn's framing has (class and factory
settings, ``onClose`` figures, Autobahn's own auto-ping and closing timer).
What both framings promise is in ``test_behaviour.py``.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.task import Clock
from twisted.logger import LogEvent

from twisted_keepalive import (
    ConnectionClosed,
    KeepaliveMixin,
    set_keepalive_options,
)

from .wire import CLOSE, EchoServer, open_server, result_of

# -- 2. timeout ----------------------------------------------------------------


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


# -- 5. cleanup --------------------------------------------------------------------


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


def test_first_ping_spread_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="first_ping_spread must be a number from 0 to 1"):
        type("Bad", (EchoServer,), {"first_ping_spread": 1.5})
    with pytest.raises(TypeError, match="first_ping_spread must be a number from 0 to 1"):
        set_keepalive_options(object(), first_ping_spread=None)


# -- browser heartbeat ---------------------------------------------------------------------


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
