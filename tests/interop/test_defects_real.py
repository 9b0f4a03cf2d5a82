"""
Regression tests for the defects of issue 13 that need real sockets: Twisted's
own write buffer (a Ping parked behind our echo), and ``twistd wskeepalive``
as an operator runs it (a misplaced mixin in ``--protocol``, a message that
crosses the server's 1001 Close at SIGTERM).

Bounds are generous: plain Autobahn answers a Ping in about 10 ms, the tests
allow a second.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import inlineCallbacks

from tests.realpeers import RealPeerCase, Recording
from tests.unit.wire import CLOSE, TEXT, frame, parse_frames

from .conftest import StartServer, free_port, run_twistd

#: Seconds within which the peer's Ping must be answered (plain Autobahn: ~0.01 s).
PONG_BOUND = 1.0


# -- 1. a peer's Ping behind our own large echo -------------------------------------


class PingBehindEchoTests(RealPeerCase):
    """
    The peer sends a 100 kB message and a Ping in one write: our echo of the
    message fills Twisted's write buffer past 64 KiB just before we read the
    Ping, and the peer reads everything as it comes.
    """

    @inlineCallbacks
    def assert_pong_arrives_at_once(self, **settings: Any) -> Any:
        recording = Recording()
        port = self.serve(recording, first_ping_spread=0.0, **settings)
        peer = self.peer(
            "raw_ping_behind_echo", "127.0.0.1", str(port), "--size", "100000", "--wait", "3"
        )
        summary = yield peer.wait_for("summary")
        self.assertIsNotNone(summary["echo_after"], "the 100 kB message was not echoed")
        [echo] = peer.of("echo")
        self.assertTrue(echo["same"] and echo["bytes"] == 100000, echo)
        self.assertIsNotNone(
            summary["pong_after"], "the peer's Ping got no Pong within 3 s of being sent"
        )
        self.assertLess(summary["pong_after"], PONG_BOUND)
        yield recording.closed

    def test_peer_ping_is_answered_at_once_behind_a_large_echo_without_keepalive(self) -> Any:
        return self.assert_pong_arrives_at_once(ping_interval=None)

    def test_peer_ping_is_answered_at_once_behind_a_large_echo_with_default_interval(
        self,
    ) -> Any:
        # The default 20 s interval: the next keepalive wake is 20 s away.
        return self.assert_pong_arrives_at_once()


class PingBehindEchoOnTwistedFramingTests(PingBehindEchoTests):
    framing = "twisted"


def test_twistd_answers_a_peer_ping_at_once_behind_a_large_echo(twistd: StartServer) -> None:
    server = twistd("--ping-interval", "off")
    assert server.port is not None
    raw = _open(server.port)
    raw.sendall(frame(0x2, os.urandom(100_000)) + frame(0x9, b"behind the echo"))
    sent_at = time.monotonic()
    received = bytearray()
    pong_after = None
    raw.settimeout(0.05)
    while pong_after is None and time.monotonic() - sent_at < 3.0:
        try:
            chunk = raw.recv(262144)
        except TimeoutError:
            continue
        if not chunk:
            break
        received += chunk
        for opcode, payload in _complete_frames(received):
            if opcode == 0xA and payload == b"behind the echo":
                pong_after = time.monotonic() - sent_at
    raw.close()
    assert pong_after is not None, "twistd never answered the Ping within 3 s"
    assert pong_after < PONG_BOUND


# -- 2. the mixin after the Autobahn base in --protocol -------------------------------


def test_twistd_refuses_a_protocol_with_the_mixin_after_the_base_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "misplaced_chat.py").write_text(
        textwrap.dedent(
            """
            from autobahn.twisted.websocket import WebSocketServerProtocol

            from twisted_keepalive import KeepaliveMixin


            class Chat(WebSocketServerProtocol, KeepaliveMixin):
                def onMessage(self, payload, isBinary):
                    self.sendMessage(payload, isBinary)
            """
        )
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    listen = f"tcp:{free_port()}:interface=127.0.0.1"
    try:
        result = run_twistd(
            "-n", "--pidfile=", "wskeepalive", "--listen", listen,
            "--protocol", "misplaced_chat.Chat",
            cwd=tmp_path, timeout=10.0,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("twistd served misplaced_chat.Chat (without keepalive) instead of refusing it")
    assert result.returncode != 0
    assert "Traceback" not in result.stdout, result.stdout
    lines = result.stdout.strip().splitlines()
    assert len(lines) <= 4, result.stdout
    assert "KeepaliveMixin" in lines[-1] and "first" in lines[-1], result.stdout


# -- 4. a message that crosses the server's Close at SIGTERM ---------------------------


@pytest.mark.parametrize(
    "message",
    [b"still talking", b"\x00wsk1 ping abc"],
    ids=["echoed message", "browser heartbeat"],
)
def test_message_crossing_the_shutdown_close_leaves_a_clean_closing_handshake(
    twistd: StartServer, message: bytes
) -> None:
    server = twistd()
    assert server.port is not None
    raw = _open(server.port)
    server.process.send_signal(signal.SIGTERM)
    received = bytearray()
    raw.settimeout(10)
    while not any(opcode == CLOSE for opcode, _ in _complete_frames(bytearray(received))):
        chunk = raw.recv(65536)
        assert chunk, "twistd closed TCP without a Close frame"
        received += chunk
    frames = _complete_frames(received)
    assert parse_frames(bytes(received)) == frames, "a partial frame after the Close"
    assert frames[-1][0] == CLOSE, frames
    close = frames[-1][1]
    assert (int.from_bytes(close[:2], "big"), close[2:]) == (1001, b"going away")
    # Our message was on its way when the Close arrived; then the proper reply.
    raw.sendall(frame(TEXT, message) + frame(CLOSE, close[:2]))
    after = bytearray(received)
    try:
        while chunk := raw.recv(65536):
            after += chunk
    except ConnectionResetError:
        # Autobahn's server aborts TCP once the closing handshake is done.
        pass
    raw.close()
    status = server.process.wait(15)
    output = server.output()
    errors = [
        line.strip() for line in output.splitlines() if "Error" in line or "Disconnected" in line
    ]
    assert "Unhandled Error" not in output and "Disconnected" not in output, (
        f"twistd logged: {' / '.join(errors[-2:])}"
    )
    assert after == received, f"twistd sent something after its Close: {parse_frames(bytes(after))}"
    [closed] = server.log(keepalive_event="close")
    assert (closed["code"], closed["clean"]) == (1001, True), closed
    assert status == 0, output


# -- helpers -----------------------------------------------------------------------------


def _open(port: int) -> socket.socket:
    """A raw WebSocket connection past its opening handshake."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16))
    raw.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = raw.recv(4096)
        assert chunk, "closed during the opening handshake"
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert not rest, "a frame before anything was asked"
    return raw


def _complete_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """The whole (unmasked, server) frames at the start of ``buffer``."""
    end = 0
    while end + 2 <= len(buffer):
        length = buffer[end + 1] & 0x7F
        pos = end + 2
        if length == 126:
            if pos + 2 > len(buffer):
                break
            length = int.from_bytes(buffer[pos : pos + 2], "big")
            pos += 2
        elif length == 127:
            if pos + 8 > len(buffer):
                break
            length = int.from_bytes(buffer[pos : pos + 8], "big")
            pos += 8
        if pos + length > len(buffer):
            break
        end = pos + length
    return parse_frames(bytes(buffer[:end]))
