"""
``--connection-log``: each WebSocket connection's opening and closing is an
info event while it is on (the default), and none while it is off -- on
either framing -- whereas a heartbeat timeout is still a warning.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, LogLevel
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

from tests.unit.test_site import connect, upgrade
from tests.unit.wire import parse_frames
from twisted_keepalive.server.connections import ConnectionTracker
from twisted_keepalive.server.framing import served_protocol
from twisted_keepalive.server.health import Ready
from twisted_keepalive.server.options import Options
from twisted_keepalive.server.service import autobahn_served, build_site
from twisted_keepalive.server.settings import Settings

_PING = 0x9


def _served(framing: str, clock: Clock, connection_log: bool) -> tuple[object, ConnectionTracker]:
    settings = Settings(
        framing=framing,
        protocol=served_protocol(framing, None),
        keepalive=MappingProxyType(
            {"ping_interval": 1.0, "ping_timeout": 0.5, "first_ping_spread": 0.0}
        ),
        connection_log=connection_log,
    )
    tracker: ConnectionTracker
    if framing == "twisted":
        from twisted_keepalive.server.web_serving import web_served

        tracker, keepalive, resource = web_served(settings, clock)
        keepalive.clock = clock  # as the mixin's below: time from the test's clock
    else:
        tracker, resource = autobahn_served(settings, clock)
        # Without a clock of its own the mixin reads a monotonic clock.
        tracker.protocol.clock = clock  # type: ignore[attr-defined]
    return build_site(resource, settings, Ready(), idle_timeout=None), tracker


def _open(site: object) -> StringTransport:
    channel, transport = connect(site)
    channel.dataReceived(upgrade())  # type: ignore[attr-defined]
    return transport


def _lose(transport: StringTransport) -> None:
    transport.connected = False
    transport.protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]


def _connection_events(logged: list[LogEvent]) -> list[str]:
    return [e["keepalive_event"] for e in logged if e.get("keepalive_event") in ("open", "close")]


@pytest.mark.parametrize("connection_log", [True, False])
def test_opening_and_closing_are_logged_only_with_the_connection_log_on(
    framing: str, connection_log: bool, logged: list[LogEvent]
) -> None:
    site, tracker = _served(framing, Clock(), connection_log)
    transport = _open(site)
    assert len(tracker.connections) == 1
    _lose(transport)
    assert not tracker.connections  # tracked all the same: the drain needs it
    expected = ["open", "close"] if connection_log else []
    assert _connection_events(logged) == expected
    if connection_log:
        assert all(
            e["log_level"] is LogLevel.info and e["peer"]
            for e in logged
            if e.get("keepalive_event") in ("open", "close")
        )


def test_a_heartbeat_timeout_is_a_warning_with_the_connection_log_off(
    framing: str, logged: list[LogEvent]
) -> None:
    clock = Clock()
    site, _ = _served(framing, clock, connection_log=False)
    transport = _open(site)
    transport.clear()
    clock.advance(1.0)
    assert [op for op, _ in parse_frames(transport.value())] == [_PING]
    clock.advance(0.5)  # no Pong: the heartbeat fails the connection
    clock.advance(0.0)
    warnings = [e for e in logged if e.get("keepalive_event") == "timeout"]
    assert [e["log_level"] for e in warnings] == [LogLevel.warn]
    assert _connection_events(logged) == []


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("on", True), ("off", False)])
def test_the_option_sets_the_connection_log(value: str | None, expected: bool) -> None:
    options = Options()
    options.parseOptions([] if value is None else ["--connection-log", value])
    assert options.settings.connection_log is expected
    if value is not None:  # and the workers of --workers get it too
        arguments = options.worker_arguments()
        assert arguments[arguments.index("--connection-log") + 1] == value


def test_a_bad_value_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--connection-log must be on or off, not 'quiet'"):
        Options().parseOptions(["--connection-log", "quiet"])
