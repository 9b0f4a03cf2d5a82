"""
``--handshake-timeout``: how long a client may take from its connect to the
end of its opening handshake (5 s by default, Autobahn's own), on either
framing -- longer for slow clients or a reconnect storm on a busy machine.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.usage import UsageError

from tests.unit.test_site import connect, upgrade
from twisted_keepalive.server.framing import served_protocol
from twisted_keepalive.server.health import Ready
from twisted_keepalive.server.options import Options
from twisted_keepalive.server.service import _served, build_site
from twisted_keepalive.server.settings import DEFAULT_HANDSHAKE_TIMEOUT, Settings


def _site(framing: str, clock: Clock, handshake_timeout: float) -> object:
    settings = Settings(
        framing=framing,
        protocol=served_protocol(framing, None),
        keepalive=MappingProxyType({"ping_interval": None}),
        handshake_timeout=handshake_timeout,
    )
    _, _, resource, idle_timeout = _served(settings, clock)
    site = build_site(resource, settings, Ready(), idle_timeout=idle_timeout)
    site.reactor = clock  # type: ignore[attr-defined]
    return site


def _connect(site: object) -> StringTransport:
    return connect(site)[1]


def _closed(transport: StringTransport) -> bool:
    return bool(transport.disconnecting or getattr(transport, "disconnected", False))


@pytest.mark.parametrize("handshake_timeout", [DEFAULT_HANDSHAKE_TIMEOUT, 12.0])
def test_a_client_that_never_sends_its_handshake_is_closed_at_the_timeout(
    framing: str, handshake_timeout: float
) -> None:
    clock = Clock()
    transport = _connect(_site(framing, clock, handshake_timeout))
    clock.advance(handshake_timeout - 0.1)
    assert not _closed(transport), "closed before --handshake-timeout"
    clock.advance(0.2)
    assert _closed(transport), "still open after --handshake-timeout"


def test_a_slow_client_within_a_longer_timeout_is_served(framing: str) -> None:
    # Past Autobahn's 5 s, inside the 30 s an operator allowed for a storm.
    clock = Clock()
    transport = _connect(_site(framing, clock, 30.0))
    clock.advance(20.0)
    transport.protocol.dataReceived(upgrade())  # type: ignore[attr-defined]
    assert transport.value().startswith(b"HTTP/1.1 101")
    assert not _closed(transport)


def test_autobahn_gets_the_same_opening_handshake_timeout() -> None:
    settings = Settings(
        framing="autobahn",
        protocol=served_protocol("autobahn", None),
        handshake_timeout=12.0,
    )
    factory, _, _, idle_timeout = _served(settings, Clock())
    assert factory.openHandshakeTimeout == 12.0  # type: ignore[attr-defined]
    assert idle_timeout == 12.0


@pytest.mark.parametrize(("given", "expected"), [([], 5.0), (["--handshake-timeout", "30"], 30.0)])
def test_the_option_sets_the_timeout_and_reaches_the_workers(
    given: list[str], expected: float
) -> None:
    options = Options()
    options.parseOptions(given)
    assert options.settings.handshake_timeout == expected
    arguments = options.worker_arguments()
    assert float(arguments[arguments.index("--handshake-timeout") + 1]) == expected


@pytest.mark.parametrize("bad", ["0", "-1", "off", "soon", "inf", "nan"])
def test_a_bad_timeout_is_a_usage_error_naming_the_option(bad: str) -> None:
    with pytest.raises(UsageError, match="--handshake-timeout"):
        Options().parseOptions(["--handshake-timeout", bad])
