"""
What only the twisted.web.websocket adapter has: ``with_keepalive``'s
settings and refusals, its transport and factory standing in for Twisted's,
the frame tracker behind the mid-frame evidence, and the bound on the wait
after the peer's Close.  The Twisted internals it stands on are pinned in
``test_web_hooks.py``, the ImportError on a Twisted without
``twisted.web.websocket`` in ``test_web_unavailable.py``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .framings import NO_WEB_FRAMING, WEB_FRAMING

if not WEB_FRAMING:
    pytest.skip(NO_WEB_FRAMING, allow_module_level=True)

from twisted.web.websocket import WebSocketResource

from twisted_keepalive import ConnectionClosed, KeepaliveMixin, set_keepalive_options
from twisted_keepalive.web import KeepaliveFactory, with_keepalive
from twisted_keepalive.web.frames import FrameTracker
from twisted_keepalive.web.link import frame_size

from .framings import Events, _AppFactory, open_peer
from .wire import CLOSE, TEXT, frame, result_of

# -- settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "error", "message"),
    [
        ("ping_interval", 0, ValueError, "ping_interval must be a positive number of seconds"),
        ("ping_interval", -1, ValueError, "ping_interval must be a positive number"),
        ("ping_interval", float("nan"), ValueError, "ping_interval must be"),
        ("ping_timeout", float("inf"), ValueError, "ping_timeout must be"),
        ("ping_timeout", 2e9, ValueError, "ping_timeout must be at most 1000000000 seconds"),
        ("ping_interval", "20", TypeError, "ping_interval must be .* not str '20'"),
        ("ping_interval", True, TypeError, "ping_interval must be"),
        ("close_timeout", None, TypeError, "close_timeout must be a positive number of seconds,"),
        ("first_ping_spread", 1.5, ValueError, "first_ping_spread must be a number from 0 to 1"),
        ("browser_heartbeat", "yes", TypeError, "browser_heartbeat must be True or False"),
    ],
)
def test_bad_settings_are_refused_when_wrapping_naming_the_setting(
    setting: str, value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        with_keepalive(_AppFactory(Events()), **{setting: value})


SETTINGS = ("ping_interval", "ping_timeout", "close_timeout", "first_ping_spread")


@pytest.mark.parametrize("setting", [*SETTINGS, "browser_heartbeat"])
@pytest.mark.parametrize(
    "value", [-1, 0, 0.5, 1.5, math.nan, math.inf, 1e307, "20", True, None, "yes"], ids=repr
)
def test_a_setting_is_refused_or_accepted_as_the_autobahn_adapter_does(
    setting: str, value: Any
) -> None:
    # The same value, the same verdict and the same message (the mixin's
    # names the class it was set on) -- or accepted by both.
    try:
        set_keepalive_options(SimpleNamespace(), **{setting: value})
    except (TypeError, ValueError) as e:
        autobahn: Exception | None = e
    else:
        autobahn = None
    if autobahn is None:
        with_keepalive(_AppFactory(Events()), **{setting: value})
        return
    with pytest.raises(type(autobahn)) as refused:
        with_keepalive(_AppFactory(Events()), **{setting: value})
    assert str(refused.value) == str(autobahn)


def test_tiny_and_huge_settings_are_accepted_and_none_turns_things_off() -> None:
    factory = with_keepalive(
        _AppFactory(Events()), ping_interval=1e-3, ping_timeout=1e9, close_timeout=1e-3
    )
    assert factory.config.ping_interval == 0.001
    assert factory.config.ping_timeout == 1e9
    off = with_keepalive(_AppFactory(Events()), ping_interval=None, ping_timeout=None)
    assert off.config.detection_bound is None


def test_defaults_are_the_autobahn_adapters() -> None:
    config = with_keepalive(_AppFactory(Events())).config
    assert (config.ping_interval, config.ping_timeout, config.close_timeout) == (20.0, 20.0, 10.0)
    assert (config.first_ping_spread, config.browser_heartbeat) == (1.0, False)
    for setting in (*SETTINGS, "browser_heartbeat"):
        assert getattr(config, setting) == getattr(KeepaliveMixin, setting), setting


def test_only_factories_are_wrapped_and_only_once() -> None:
    with pytest.raises(TypeError, match=r"needs a twisted\.web\.websocket factory"):
        with_keepalive(object())
    wrapped = with_keepalive(_AppFactory(Events()))
    with pytest.raises(ValueError, match="already has keepalive"):
        with_keepalive(wrapped)
    with pytest.raises(TypeError, match="clock must provide IReactorTime"):
        with_keepalive(_AppFactory(Events()), clock=object())  # type: ignore[arg-type]


def test_the_wrapped_factory_stands_in_for_the_original() -> None:
    apps = _AppFactory(Events())
    apps.greeting = "hello"  # type: ignore[attr-defined]
    factory = with_keepalive(apps)
    assert isinstance(factory, KeepaliveFactory)
    assert factory.greeting == "hello"
    assert WebSocketResource(factory).factory is factory


def test_a_factory_that_refuses_a_connection_is_obeyed() -> None:
    class Refusing:
        def buildProtocol(self, addr: Any) -> None:
            return None

    assert with_keepalive(Refusing()).buildProtocol("ws://x/") is None


# -- the transport the application gets ----------------------------------------------


def test_the_applications_transport_still_has_twisteds_attributes() -> None:
    peer = open_peer("twisted")
    # Twisted's wire protocol keeps its byte-stream transport as `transport`.
    assert peer.keepalive.transport is peer.transport
    assert peer.keepalive.keepalive_config.ping_interval == 1.0


def test_messages_go_out_as_with_twisteds_transport() -> None:
    peer = open_peer("twisted")
    peer.keepalive.sendTextMessage("héllo")
    peer.keepalive.sendBytesMessage(b"\x00\x01")
    assert peer.frames() == [(TEXT, "héllo".encode()), (0x2, b"\x00\x01")]


def test_closing_twice_or_after_the_peers_close_raises_nothing() -> None:
    peer = open_peer("twisted")
    peer.receive(CLOSE, (1000).to_bytes(2, "big"))
    peer.keepalive.loseConnection(1000)
    peer.keepalive.loseConnection(1001)
    assert [opcode for opcode, _ in peer.frames()] == [CLOSE]


def test_our_own_close_is_aborted_when_the_peer_never_takes_it() -> None:
    peer = open_peer("twisted", close_timeout=3.0)
    pending = peer.keepalive.ping(b"p")
    peer.keepalive.loseConnection(1001, "going away")
    assert peer.frames()[-1] == (CLOSE, (1001).to_bytes(2, "big") + b"going away")
    peer.clock.advance(2.99)
    assert not peer.transport.aborted
    peer.clock.advance(0.01)
    assert peer.transport.aborted
    peer.lose()
    failure = result_of(pending).value
    assert isinstance(failure, ConnectionClosed)
    assert (failure.code, failure.reason) == (1001, "going away")


def test_a_client_can_ping_as_soon_as_connect_fires() -> None:
    # connect() fires before negotiationFinished(); code awaiting it pings.
    peer = open_peer("twisted", "client", ping_interval=None)
    assert peer.pings() == []
    pending = peer.keepalive.ping(b"early")
    assert peer.pings() == [b"early"]
    peer.clock.advance(0.5)
    peer.pong(b"early")
    assert result_of(pending) == 0.5


def test_a_server_ping_before_negotiation_finished_fails_instead_of_preceding_the_101() -> None:
    results: list[Any] = []
    peer = open_peer("twisted", events=Events(on_start=lambda t: results.append(t.ping())))
    [early] = results
    assert isinstance(result_of(early).value, ConnectionClosed)
    # Nothing went out before (or after) the 101 response.
    assert peer.frames() == []


def test_an_application_closing_in_its_open_hook_gets_no_keepalive() -> None:
    events = Events(on_open=lambda keepalive: keepalive.loseConnection(1000))
    peer = open_peer("twisted", events=events)
    assert [opcode for opcode, _ in peer.frames()] == [CLOSE]
    peer.clock.advance(5.0)
    assert [opcode for opcode, _ in peer.frames()] == []
    peer.lose()
    assert peer.clock.getDelayedCalls() == []


# -- the frame tracker ---------------------------------------------------------------------


def _stream(frames: list[tuple[int, int, bool]]) -> bytes:
    return b"".join(frame(op, b"y" * length, masked=masked) for op, length, masked in frames)


frames_strategy = st.lists(
    st.tuples(
        st.sampled_from([0x1, 0x2, 0x9, 0xA]),
        st.sampled_from([0, 1, 125, 126, 200, 65535, 65536, 70000]),
        st.booleans(),
    ),
    min_size=1,
    max_size=6,
)


@given(frames_strategy, st.lists(st.integers(min_value=1, max_value=70000), max_size=12))
def test_the_tracker_follows_frame_boundaries_however_the_bytes_are_split(
    frames: list[tuple[int, int, bool]], cuts: list[int]
) -> None:
    data = _stream(frames)
    bounds = []
    position = 0
    for opcode, length, masked in frames:
        position += len(frame(opcode, b"y" * length, masked=masked))
        bounds.append(position)
    tracker = FrameTracker()
    fed = 0
    for cut in sorted({min(c, len(data)) for c in cuts} | {len(data)}):
        tracker.feed(data[fed:cut])
        fed = cut
        # Mid-frame exactly when the bytes so far end inside a frame.
        assert tracker.mid_frame == (fed not in bounds and fed > 0)
        assert tracker.begun == sum(1 for start in [0, *bounds[:-1]] if start < fed)
    assert not tracker.mid_frame


def test_the_tracker_skips_a_clients_http_response_and_reads_a_close_code() -> None:
    tracker = FrameTracker(http_first=True)
    tracker.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r")
    tracker.feed(b"\n\r\n" + frame(TEXT, b"hi", masked=False)[:1])
    assert tracker.begun == 1 and tracker.mid_frame
    tracker.feed(frame(TEXT, b"hi", masked=False)[1:] + frame(CLOSE, b"\x03\xe9", masked=True))
    assert not tracker.mid_frame
    assert (tracker.close_seen, tracker.close_code) == (True, 1001)


@given(
    st.integers(min_value=1000, max_value=4999),
    st.text(max_size=40).filter(lambda t: len(t.encode()) <= 123),
    st.booleans(),
    st.lists(st.integers(min_value=1, max_value=200), max_size=8),
)
def test_the_tracker_reads_a_close_code_and_reason_however_the_bytes_are_split(
    code: int, reason: str, masked: bool, cuts: list[int]
) -> None:
    data = frame(TEXT, b"before", masked=masked) + frame(
        CLOSE, code.to_bytes(2, "big") + reason.encode(), masked=masked
    )
    tracker = FrameTracker()
    fed = 0
    for cut in sorted({min(c, len(data)) for c in cuts} | {len(data)}):
        tracker.feed(data[fed:cut])
        fed = cut
    assert (tracker.close_seen, tracker.close_code, tracker.close_reason) == (True, code, reason)


def test_frame_sizes_are_counted_as_on_the_wire() -> None:
    for length in (0, 125, 126, 65535, 65536):
        for masked in (False, True):
            assert frame_size(length, masked) == len(frame(TEXT, b"z" * length, masked=masked))


# -- the peer's Close -------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["server", "client"])
def test_the_transport_tells_the_code_and_reason_of_the_peers_close(side: str) -> None:
    peer = open_peer("twisted", side)
    assert (peer.keepalive.peer_close_code, peer.keepalive.peer_close_reason) == (None, None)
    peer.receive(CLOSE, (4001).to_bytes(2, "big") + "restart, désolé".encode())
    peer.lose()
    assert peer.keepalive.peer_close_code == 4001
    assert peer.keepalive.peer_close_reason == "restart, désolé"


def test_a_peers_close_is_aborted_when_our_buffer_never_drains() -> None:
    # Twisted answers the peer's Close and closes TCP only once everything
    # it buffered has left; for a peer that stopped reading, that is never.
    peer = open_peer("twisted", close_timeout=3.0)
    peer.receive(CLOSE, (1000).to_bytes(2, "big"))
    assert peer.frames() == [(CLOSE, (1000).to_bytes(2, "big"))]
    peer.clock.advance(2.99)
    assert not peer.transport.aborted
    peer.clock.advance(0.01)
    assert peer.transport.aborted
