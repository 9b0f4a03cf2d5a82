"""
The server's ``twisted.web`` site, driven byte by byte over a
``StringTransport``, on either framing: WebSocket upgrades on any path go
to the framing's resource, plain requests to the pages and probes, and the
HTTP channel lets go of the connection it handed over.
"""

from __future__ import annotations

import base64
import os
import re

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.unit.wire import CLOSE, parse_frames
from twisted_keepalive.server.connections import ConnectionTracker
from twisted_keepalive.server.framing import served_protocol
from twisted_keepalive.server.health import Ready
from twisted_keepalive.server.service import autobahn_served, build_site
from twisted_keepalive.server.settings import Settings

# The ``framing`` fixture (conftest.py) runs each test on both framings, and
# skips Twisted's, saying why, where Twisted has no twisted.web.websocket.


def site_and_factory(framing: str, **settings: object) -> tuple[object, ConnectionTracker, Ready]:
    chosen = Settings(
        framing=framing,
        protocol=served_protocol(framing, None),
        **settings,  # type: ignore[arg-type]
    )
    tracker: ConnectionTracker
    if framing == "twisted":
        from twisted_keepalive.server.web_serving import web_served

        tracker, _, resource = web_served(chosen, Clock())
    else:
        tracker, resource = autobahn_served(chosen, Clock())
    ready = Ready()
    return build_site(resource, chosen, ready, idle_timeout=None), tracker, ready


def connect(site: object) -> tuple[object, StringTransport]:
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))  # type: ignore[attr-defined]
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    # As a TCP transport does: Autobahn's takeover replaces it.
    transport.protocol = channel  # type: ignore[attr-defined]
    channel.makeConnection(transport)
    return channel, transport


def upgrade(path: str = "/") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        ).encode()
        + b"Sec-WebSocket-Key: "
        + key
        + b"\r\n\r\n"
    )


@pytest.mark.parametrize("path", ["/", "/chat", "/healthz", "/keepalive.js", "/a/b?c=d"])
def test_an_upgrade_on_any_path_opens_a_websocket(framing: str, path: str) -> None:
    site, factory, _ = site_and_factory(framing)
    channel, transport = connect(site)
    channel.dataReceived(upgrade(path))  # type: ignore[attr-defined]
    # wsproto before 1.3 sends the 101 without its reason phrase.
    assert re.match(rb"HTTP/1\.1 101( Switching Protocols)? ?\r\n", transport.value())
    [connection] = factory.connections
    if framing == "autobahn":
        assert transport.protocol is connection  # type: ignore[attr-defined]


class _Producer:
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def test_the_http_channel_lets_go_of_a_connection_it_handed_over(framing: str) -> None:
    site, factory, _ = site_and_factory(framing)
    channel, transport = connect(site)
    assert transport.producer is not None  # the HTTP channel, while it parses
    channel.dataReceived(upgrade())  # type: ignore[attr-defined]
    # Otherwise the channel and its request live as long as the WebSocket,
    # and the application could not register a producer of its own.
    assert transport.producer is None
    [connection] = factory.connections
    if framing == "twisted":
        connection.transport.attachProducer(_Producer())
    else:
        connection.transport.registerProducer(_Producer(), True)
    assert isinstance(transport.producer, _Producer)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/", 200),
        ("/keepalive.js", 200),
        ("/healthz", 200),
        ("/readyz", 200),
        ("/keepalive.js/more", 404),
        ("/healthz/", 404),
        ("/nothing", 404),
    ],
)
def test_plain_requests_get_pages_probes_or_404(framing: str, path: str, status: int) -> None:
    site, factory, _ = site_and_factory(framing)
    channel, transport = connect(site)
    channel.dataReceived(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # type: ignore[attr-defined]
    assert transport.value().startswith(f"HTTP/1.1 {status} ".encode()), transport.value()
    assert not factory.connections


def test_readyz_answers_503_once_not_ready(framing: str) -> None:
    site, _, ready = site_and_factory(framing)
    ready.stop("draining")
    channel, transport = connect(site)
    channel.dataReceived(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")  # type: ignore[attr-defined]
    response = transport.value()
    assert response.startswith(b"HTTP/1.1 503 ")
    assert response.endswith(b"\r\n\r\ndraining\n")


def test_demo_off_leaves_the_root_unserved(framing: str) -> None:
    site, _, _ = site_and_factory(framing, demo=False)
    channel, transport = connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # type: ignore[attr-defined]
    assert transport.value().startswith(b"HTTP/1.1 404 ")


def test_a_connection_goes_away_with_1001_and_its_abort_drops_tcp(framing: str) -> None:
    site, factory, _ = site_and_factory(framing)
    channel, transport = connect(site)
    channel.dataReceived(upgrade())  # type: ignore[attr-defined]
    [connection] = factory.connections
    transport.clear()
    connection.going_away()
    connection.going_away()  # the drain may tell a connection twice: one Close
    assert parse_frames(transport.value()) == [(CLOSE, (1001).to_bytes(2, "big") + b"going away")]
    connection.abort()
    assert transport.disconnected  # what StringTransport's abortConnection sets


def test_a_request_is_under_way_until_it_is_answered_or_handed_over(framing: str) -> None:
    site, _, _ = site_and_factory(framing)
    page, _ = connect(site)
    page.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # type: ignore[attr-defined]
    socket, _ = connect(site)
    request = upgrade()
    socket.dataReceived(request[:40])  # type: ignore[attr-defined]
    assert len(site.under_way) == 2  # type: ignore[attr-defined]
    page.dataReceived(b"\r\n")  # type: ignore[attr-defined]
    assert len(site.under_way) == 1  # type: ignore[attr-defined]
    socket.dataReceived(request[40:])  # type: ignore[attr-defined]
    assert len(site.under_way) == 0  # type: ignore[attr-defined]


def test_a_handshake_completing_after_the_ports_closed_opens_and_goes_away(framing: str) -> None:
    site, factory, _ = site_and_factory(framing)
    channel, transport = connect(site)
    request = upgrade()
    channel.dataReceived(request[:40])  # type: ignore[attr-defined]
    factory.draining = True  # what the drain sets once its ports have closed
    channel.dataReceived(request[40:])  # type: ignore[attr-defined]
    head, _, frames = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert parse_frames(frames) == [(CLOSE, (1001).to_bytes(2, "big") + b"going away")]


def test_the_pacer_counts_a_connection_from_its_accept_to_its_upgrade_or_answer(
    framing: str,
) -> None:
    # Accepting pauses while two connections are mid-handshake, whichever
    # way each ends: a WebSocket upgrade, or a plain request answered.
    from twisted_keepalive.server.accepting import AcceptPacer

    _, _, ready = site_and_factory(framing)
    chosen = Settings(framing=framing, protocol=served_protocol(framing, None))
    if framing == "twisted":
        from twisted_keepalive.server.web_serving import web_served

        _, _, resource = web_served(chosen, Clock())
    else:
        _, resource = autobahn_served(chosen, Clock())
    pacer = AcceptPacer(Clock(), most_pending=2)
    site = build_site(resource, chosen, ready, idle_timeout=None, pacer=pacer)
    upgrading, upgrading_transport = connect(site)
    probing, _ = connect(site)
    assert pacer.paused
    upgrading.dataReceived(upgrade())  # type: ignore[attr-defined]
    assert upgrading_transport.value().startswith(b"HTTP/1.1 101")
    assert not pacer.paused
    connect(site)
    assert pacer.paused
    probing.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # type: ignore[attr-defined]
    assert not pacer.paused
