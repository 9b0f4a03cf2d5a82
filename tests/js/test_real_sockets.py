"""
keepalive.js with real WebSocket implementations against a real
``twistd -n wskeepalive`` that is frozen (SIGSTOP) and thawed, twice:
Node's ``ws`` and ``undici`` (neither is a browser: ``ws`` ignores the
``{signal}`` option of ``addEventListener`` and emits ``error`` events that
crash a process nobody listens to them in) and headless Chromium.

Whatever the implementation, the module holds at most one socket that is
connecting or open at any time, comes back after each freeze, and after
``close()`` leaves nothing behind: the Node process exits by itself, the
page's sockets all reach CLOSED, and no socket keeps a listener of the
module's but its error sink.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.interop.conftest import Event, Peer, StartServer, free_port, subprocess_env
from tests.realpeers import NODE, PEERS

HERE = Path(__file__).parent
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))

# Milliseconds, for the module: short enough that each freeze abandons the
# open socket (no reply in 400 ms) and then at least one reconnection attempt
# (no handshake in 300 ms) before the server thaws.
OPTIONS = {
    "pingInterval": 200,
    "pingTimeout": 400,
    "connectTimeout": 300,
    "reconnectDelay": 50,
    "reconnectDelayMax": 200,
}
FREEZE = 1.5  # seconds
#: How long a Node process may take to exit after close(): the closing
#: handshake with a live server, on a busy 2-core machine.
EXIT_WITHIN = 10.0


def _ready(kind: str) -> str | None:
    """Why this implementation cannot run here, or None."""
    if NODE is None:
        return "Node.js is not installed"
    package = {"ws": "ws", "undici": "undici", "chromium": "playwright-core"}[kind]
    if not (PEERS / "node_modules" / package).is_dir():
        return f"tests/peers/node_modules/{package} is missing: npm ci in tests/peers"
    if kind == "chromium" and not CHROMIUM.exists():
        return "Debian's chromium is not installed (apt-get install chromium)"
    return None


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Callable[..., Peer]]:
    started: list[Peer] = []

    def start(kind: str, url: str, options: dict[str, object] = OPTIONS) -> Peer:
        missing = _ready(kind)
        if missing:
            pytest.skip(missing)
        assert NODE is not None
        stderr_path = tmp_path / f"{kind}.err"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [NODE, str(HERE / "real_sockets.mjs"), kind, url, json.dumps(options)],
                env=subprocess_env(CHROMIUM=str(CHROMIUM)),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        started.append(Peer(process, stderr_path))
        return started[-1]

    yield start

    for peer in started:
        if peer.process.poll() is None:
            peer.process.kill()
        peer.process.wait()


def command(peer: Peer, line: str) -> None:
    assert peer.process.stdin is not None
    peer.process.stdin.write(line + "\n")
    peer.process.stdin.flush()


def assert_nothing_left_attached(exited: Event) -> None:
    # Every socket the module created, abandoned ones included, keeps only
    # the module's error sink (which holds no reference to it): the module
    # removes its listeners itself rather than trusting an AbortSignal that
    # `ws` (and older browsers) ignore.
    assert exited["sockets"], exited
    assert exited["listening"] == [["error"]] * exited["sockets"], exited


def freeze(pid: int, seconds: float) -> None:
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("kind", ["ws", "undici", "chromium"])
def test_one_socket_at_a_time_across_freezes_and_nothing_left_after_close(
    twistd: StartServer, driver: Callable[..., Peer], kind: str
) -> None:
    server = twistd()
    peer = driver(kind, server.url)
    peer.wait_for("open")
    peer.wait_for("latency")
    for opened in (2, 3):
        freeze(server.process.pid, FREEZE)
        peer.wait_for("open", n=opened)
        peer.wait_for("latency", n=len(peer.of("latency")) + 1)
    # Each freeze ended the open socket, and attempts made while frozen were
    # given up (no handshake within connectTimeout).
    reasons = {e["reason"] for e in peer.of("close")}
    assert {"keepalive ping timeout", "keepalive connect timeout"} <= reasons, peer.events

    command(peer, "close")
    exited = peer.wait_for("exit", timeout=EXIT_WITHIN)
    assert exited["live"] == 0, exited
    assert_nothing_left_attached(exited)
    if kind == "chromium":
        assert exited["allClosed"], exited
    else:
        # Nothing but the sockets kept the process alive after close(): the
        # last one has gone. (undici leaves the readyState of a socket
        # abandoned while connecting at CLOSING, with nothing behind it.)
        assert peer.process.wait(EXIT_WITHIN) == 0
    maxima = [e["max"] for e in peer.of("live")] + [exited["max"]]
    assert max(maxima) == 1, [e for e in peer.events if e["event"] in ("live", "close", "open")]
    assert not peer.of("pageerror")


@pytest.mark.parametrize("kind", ["ws", "undici", "chromium"])
def test_refused_url_reports_error_then_close_and_the_provider_gives_the_next(
    twistd: StartServer, driver: Callable[..., Peer], kind: str
) -> None:
    server = twistd()
    refused = f"ws://127.0.0.1:{free_port()}/"  # nothing listens there
    peer = driver(kind, server.url, {**OPTIONS, "urls": [refused, server.url]})
    opened = peer.wait_for("open")
    assert opened["url"] == server.url
    kinds = [e["event"] for e in peer.events if e["event"] in ("error", "close", "open")]
    assert kinds[:3] == ["error", "close", "open"], peer.events
    assert peer.of("close")[0]["code"] == 1006
    assert peer.of("close")[0]["delay"] is not None

    peer.wait_for("latency")
    command(peer, "reconnect")
    close = peer.wait_for("close", n=2)
    assert (close["code"], close["reason"], close["delay"]) == (1000, "reconnect", 0)
    peer.wait_for("open", n=2)
    peer.wait_for("latency", n=len(peer.of("latency")) + 1)
    command(peer, "close")
    exited = peer.wait_for("exit", timeout=EXIT_WITHIN)
    assert exited["live"] == 0
    assert_nothing_left_attached(exited)
    assert max(e["max"] for e in peer.of("live")) == 1


@pytest.mark.parametrize("kind", ["ws", "undici", "chromium"])
def test_send_while_not_open_throws_and_nothing_is_sent_later(
    twistd: StartServer, driver: Callable[..., Peer], kind: str
) -> None:
    # The decision documented in docs/browser.md: no queue across a
    # reconnection. What send() refused is not delivered on the next connection.
    server = twistd()
    peer = driver(kind, server.url)
    peer.wait_for("open")
    command(peer, "send before")
    assert peer.wait_for("message")["data"] == "before"

    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        peer.wait_for("close", reason="keepalive ping timeout")
        command(peer, "send during")
        refused = peer.wait_for("send-error")
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    assert refused["name"] == "InvalidStateError", refused
    assert "not queued" in refused["message"], refused

    peer.wait_for("open", n=2)
    command(peer, "send after")
    assert peer.wait_for("message", n=2)["data"] == "after"
    assert [e["data"] for e in peer.of("message")] == ["before", "after"]
    command(peer, "close")
    assert peer.wait_for("exit", timeout=EXIT_WITHIN)["live"] == 0
