"""
What ``twisted_keepalive.web`` reaches beyond ``twisted.web.websocket``'s
documented API (``twisted_keepalive/web/hooks.py``): one test here per
function, on Twisted's own server (``Site`` and ``WebSocketResource``) and
client (``WebSocketClientEndpoint``) with a plain protocol and no keepalive,
so that each fails, naming what moved, when a Twisted release changes the
internal under it -- and the end-to-end consequence of each, with keepalive.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from twisted.logger import LogEvent

from .framings import NO_WEB_FRAMING, WEB_FRAMING

if not WEB_FRAMING:
    pytest.skip(NO_WEB_FRAMING, allow_module_level=True)

from twisted_keepalive.web import hooks
from twisted_keepalive.web import protocol as web_protocol

from .framings import open_peer, wire_twisted
from .wire import CLOSE, TEXT, frame, parse_frames

SIDES = ["server", "client"]


class Plain:
    """A plain twisted.web.websocket protocol that runs a check as negotiation starts."""

    def __init__(self, addr: Any, on_start: Any) -> None:
        # The Request on a server, the URL on a client: what the adapter gets.
        self.request = None if isinstance(addr, str) else addr
        self.on_start = on_start
        self.transport: Any = None
        self.messages: list[str] = []
        self.checked: Any = None

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport
        if self.on_start is not None:
            self.checked = self.on_start(self)

    def negotiationFinished(self) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        self.messages.append(message)

    def bytesMessageReceived(self, data: bytes) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass


class PlainFactory:
    def __init__(self, on_start: Any = None) -> None:
        self.on_start = on_start
        self.built: list[Plain] = []

    def buildProtocol(self, addr: Any) -> Plain:
        self.built.append(Plain(addr, self.on_start))
        return self.built[-1]


def plain(side: str, on_start: Any = None) -> tuple[Plain, Any, Any]:
    """A plain protocol past its handshake on ``side``; the transport and delivery."""
    factory = PlainFactory(on_start)
    transport, deliver, _ = wire_twisted(factory, side)
    [built] = factory.built
    return built, transport, deliver


# -- tcp_transport_of -----------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
def test_twisteds_websocket_transport_still_keeps_the_byte_stream_as_transport(
    side: str,
) -> None:
    app, transport, _ = plain(side)
    assert hooks.tcp_transport_of(app.transport) is transport


def test_an_object_with_no_byte_stream_under_it_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"not a twisted\.web\.websocket transport"):
        hooks.tcp_transport_of(object())


# -- inbound_holder and observe_inbound ---------------------------------------------------


def test_twisteds_upgrade_still_points_the_channels_data_received_at_the_wire_protocol() -> None:
    # Checked as negotiation starts, when the adapter looks.
    app, _, _ = plain("server", lambda p: hooks.inbound_holder(p.transport, p.request))
    assert app.request is not None
    assert app.checked is app.request.channel


def test_twisteds_client_wire_protocol_still_receives_through_its_own_data_received() -> None:
    app, _, _ = plain("client", lambda p: hooks.inbound_holder(p.transport, None))
    assert app.checked is app.transport


def test_a_channel_that_delivers_elsewhere_holds_nothing_to_observe() -> None:
    app, _, _ = plain("server")
    elsewhere = SimpleNamespace(channel=SimpleNamespace(dataReceived=lambda data: None))
    assert hooks.inbound_holder(app.transport, elsewhere) is None


@pytest.mark.parametrize("side", SIDES)
def test_observed_bytes_still_reach_twisted(side: str) -> None:
    seen: list[bytes] = []

    def observe(p: Plain) -> None:
        holder = hooks.inbound_holder(p.transport, p.request)
        assert holder is not None
        hooks.observe_inbound(holder, seen.append)

    app, _, deliver = plain(side, observe)
    data = frame(TEXT, b"hello", masked=side == "server")
    del seen[:]  # a client's observer saw the HTTP response too
    deliver(data[:3])
    deliver(data[3:])
    assert seen == [data[:3], data[3:]]
    # Twisted before 26.10 hands a message over in the pieces it arrived in.
    assert "".join(app.messages) == "hello"


@pytest.mark.parametrize("side", SIDES)
def test_with_keepalive_a_peer_mid_frame_is_seen_arriving(side: str) -> None:
    # The end-to-end consequence: if the bytes were not seen, a peer
    # mid-frame would be taken for a silent one.
    peer = open_peer("twisted", side)
    peer.clock.advance(1.0)
    peer.pings()
    big = frame(TEXT, b"x" * 10_000, masked=peer.masks)
    for i in range(10):
        peer.deliver(big[i * 1000 : (i + 1) * 1000])
        peer.clock.advance(0.3)
    assert peer.events.timeouts == [], "the peer's bytes were not seen arriving"


def test_without_a_holder_keepalive_warns_once_that_it_is_blind(
    monkeypatch: pytest.MonkeyPatch, logged: list[LogEvent]
) -> None:
    monkeypatch.setattr(web_protocol, "_blind_warned", False)
    monkeypatch.setattr(hooks, "inbound_holder", lambda transport, request: None)
    open_peer("twisted")
    open_peer("twisted")
    [warning] = [e for e in logged if e.get("keepalive_event") == "blind"]
    assert warning["log_level"].name == "warn"
    assert "middle of a large frame" in warning["log_format"]


# -- send_close -------------------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
def test_twisteds_wire_protocol_still_sends_a_close_with_its_reason(side: str) -> None:
    app, transport, _ = plain(side)
    transport.clear()
    hooks.send_close(app.transport, 1011, "keepalive ping timeout")
    assert parse_frames(transport.value()) == [
        (CLOSE, (1011).to_bytes(2, "big") + b"keepalive ping timeout")
    ]
    assert transport.disconnecting, "Twisted no longer closes TCP after its Close"
