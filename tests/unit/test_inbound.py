"""
The lone-Pong path (``twisted_keepalive/autobahn/inbound.py``) reads a Pong
exactly as Autobahn's parser would: same ``onPong``, same traffic counters,
same state -- and leaves everything else to Autobahn.  The property feeds the
same bytes, cut anywhere, to a connection with the path and one without it.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_keepalive.autobahn import inbound, mixin
from twisted_keepalive.glue.transport import xor_mask

from .wire import PING, PONG, TEXT, EchoClient, EchoServer, frame, open_client, open_server


class Server(EchoServer):
    def onConnect(self, request: Any) -> None:
        self.seen: list[tuple[str, bytes]] = []

    def onPong(self, payload: bytes) -> None:
        self.seen.append(("pong", payload))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.seen.append(("message", payload))


class Client(EchoClient):
    def onConnect(self, response: Any) -> None:
        self.seen: list[tuple[str, bytes]] = []

    def onPong(self, payload: bytes) -> None:
        self.seen.append(("pong", payload))


def observed(peer: Any) -> dict[str, Any]:
    protocol = peer.protocol
    return {
        "seen": list(protocol.seen),
        "traffic": dict(vars(protocol.trafficStats)),
        "state": protocol.state,
        "buffered": protocol.data,
        "mid_frame": getattr(protocol, "current_frame", None) is not None,
        "written": peer.transport.value(),
        "dropped": peer.transport.disconnecting,
        "pongs": protocol._keepalive_link.heartbeat.pongs,
        "latency": protocol.latency,
    }


def without_lone_pongs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mixin, "read_lone_pong", lambda protocol, data, masked: False)


# -- the frame itself -----------------------------------------------------------


@given(payload=st.binary(max_size=125), key=st.binary(min_size=4, max_size=4))
def test_a_lone_masked_pong_gives_its_payload(payload: bytes, key: bytes) -> None:
    data = bytes([0x8A, 0x80 | len(payload)]) + key + xor_mask(key, payload)
    assert inbound.lone_pong(data, masked=True) == payload
    assert inbound.lone_pong(data, masked=False) is None
    assert inbound.lone_pong(data + b"\x8a", masked=True) is None
    assert inbound.lone_pong(data[:-1], masked=True) is None


@given(payload=st.binary(max_size=125))
def test_a_lone_unmasked_pong_gives_its_payload(payload: bytes) -> None:
    data = bytes([0x8A, len(payload)]) + payload
    assert inbound.lone_pong(data, masked=False) == payload
    assert inbound.lone_pong(data, masked=True) is None
    assert inbound.lone_pong(data + b"\x00", masked=False) is None


@pytest.mark.parametrize(
    "first", [0x0A, 0x9A, 0xAA, 0xCA, 0x89, 0x81, 0x88], ids=lambda b: f"first byte {b:#x}"
)
def test_anything_but_fin_and_pong_is_left_to_autobahn(first: int) -> None:
    # Not final, reserved bits set, or another opcode.
    data = bytes([first, 0x84]) + b"\x00" * 8
    assert inbound.lone_pong(data, masked=True) is None


def test_a_pong_longer_than_a_control_frame_may_be_is_left_to_autobahn() -> None:
    assert inbound.lone_pong(bytes([0x8A, 0x80 | 126]) + b"\x00" * 132, masked=True) is None
    assert inbound.lone_pong(bytes([0x8A, 126]) + b"\x00" * 128, masked=False) is None


# -- Autobahn's internals it reads ----------------------------------------------------


def test_debug_logging_off_follows_the_protocols_logger() -> None:
    peer = open_server(Server)
    log = peer.protocol.log
    assert inbound.debug_logging_off(peer.protocol)
    level = log._log_level
    log.set_log_level("debug")
    try:
        assert not inbound.debug_logging_off(peer.protocol)
    finally:
        log.set_log_level(level, keep=False)
    assert inbound.debug_logging_off(peer.protocol)


def test_the_parser_is_between_frames_only_when_nothing_is_buffered() -> None:
    peer = open_server(Server)
    protocol = peer.protocol
    assert inbound.parser_between_frames(protocol)
    protocol.dataReceived(frame(TEXT, b"hello")[:3])
    assert not inbound.parser_between_frames(protocol)


@pytest.mark.parametrize("option", ["logFrames", "logOctets"])
def test_a_connection_that_logs_frames_or_octets_reads_pongs_through_autobahn(
    option: str,
) -> None:
    peer = open_server(Server)
    setattr(peer.protocol, option, True)
    assert not inbound.parser_between_frames(peer.protocol)


# -- the same outcome with and without it --------------------------------------------


def test_a_lone_pong_takes_the_short_path_and_ends_as_autobahns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast, slow = open_server(Server), open_server(Server)
    read = []
    monkeypatch.setattr(
        mixin, "read_lone_pong", lambda *a: read.append(inbound.read_lone_pong(*a)) or read[-1]
    )
    pong = frame(PONG, b"abcd")
    fast.protocol.dataReceived(pong)
    assert read == [True]
    without_lone_pongs(monkeypatch)
    slow.protocol.dataReceived(pong)
    assert observed(fast) == observed(slow)
    assert fast.protocol.seen == [("pong", b"abcd")]


def test_a_clients_lone_pong_ends_as_autobahns(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = open_client(Client), open_client(Client)
    pongs = (frame(PONG, b"xyz", masked=False), frame(PONG, b"masked", masked=True))
    for pong in pongs:
        fast.protocol.dataReceived(pong)
    without_lone_pongs(monkeypatch)
    for pong in pongs:
        slow.protocol.dataReceived(pong)
    # A masked frame from a server is a protocol violation either way.
    assert observed(fast) == observed(slow)
    assert fast.protocol.seen == [("pong", b"xyz")] and fast.transport.disconnecting


_FRAMES = st.one_of(
    st.builds(lambda p: frame(PONG, p), st.binary(max_size=125)),
    st.builds(lambda p: frame(PONG, p, masked=False), st.binary(max_size=8)),
    st.builds(lambda p: frame(PING, p), st.binary(max_size=8)),
    st.builds(lambda p: frame(TEXT, p), st.text(max_size=20).map(str.encode)),
    st.builds(lambda p: bytes([0xCA]) + frame(PONG, p)[1:], st.binary(max_size=4)),  # RSV
)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(_FRAMES, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 200)))
def test_any_bytes_cut_anywhere_end_the_same_with_and_without_it(
    frames: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(frames)
    # Mostly whole frames per read (where the short path applies), some cut.
    bounds = {0, len(stream)} | {sum(map(len, frames[:i])) for i in range(len(frames))}
    bounds |= {c for c in cuts if c < len(stream)}
    edges = sorted(bounds)
    chunks = [stream[a:b] for a, b in itertools.pairwise(edges)]
    with pytest.MonkeyPatch.context() as patch:
        fast = open_server(Server)
        for chunk in chunks:
            fast.protocol.dataReceived(chunk)
        without_lone_pongs(patch)
        slow = open_server(Server)
        for chunk in chunks:
            slow.protocol.dataReceived(chunk)
        assert observed(fast) == observed(slow)
