"""
``twistd wskeepalive`` as an operator runs it behind a load balancer, over
real sockets: the probes, the pages through ``twisted.web``, the drain
(readiness, grace, spread, a second signal) and the metrics an operator
expects from a Prometheus endpoint.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import signal
import socket
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.logger import LogLevel
from websockets.sync.client import connect

from tests.unit.wire import CLOSE, frame, parse_frames

from .conftest import Server, StartServer, free_port


def fetch(
    port: int, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request: status, headers (lower-case names), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def metrics_port_and_options() -> tuple[int, list[str]]:
    port = free_port()
    return port, ["--metrics", f"tcp:{port}:interface=127.0.0.1"]


# -- probes --------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_healthz_and_readyz_answer_200_on_every_port(
    twistd: StartServer, framing: str, method: str
) -> None:
    metrics_port, options = metrics_port_and_options()
    second = free_port()
    server = twistd("--listen", f"tcp:{second}:interface=127.0.0.1", *options)
    assert server.port is not None
    for port in (server.port, second, metrics_port):
        for path, text in (("/healthz", b"ok\n"), ("/readyz", b"ready\n")):
            status, headers, body = fetch(port, path, method)
            assert status == 200, (port, path)
            assert headers["cache-control"] == "no-store"
            assert headers["content-type"] == "text/plain; charset=utf-8"
            assert headers["content-length"] == str(len(text))
            assert body == (text if method == "GET" else b"")


def _fetch_every_page(server: Server, metrics_port: int) -> None:
    assert server.port is not None
    for path in ("/", "/keepalive.js", "/healthz", "/readyz", "/no/such/page") * 3:
        fetch(server.port, path)
    fetch(server.port, "/keepalive.js", "HEAD")
    for path in ("/healthz", "/readyz", "/metrics"):
        fetch(metrics_port, path)
    with connect(server.url) as client:
        client.send("still a WebSocket server")
        assert client.recv(timeout=5) == "still a WebSocket server"


def test_probes_and_page_fetches_are_not_logged(twistd: StartServer, framing: str) -> None:
    # twistd's own log prints every level, debug included: a probe every
    # 2 s logged at any level would be a line every 2 s.
    metrics_port, options = metrics_port_and_options()
    server = twistd(*options)
    _fetch_every_page(server, metrics_port)
    server.stop()
    loud = [e for e in server.log() if e.get("log_level") in (LogLevel.warn, LogLevel.error)]
    assert loud == [], loud
    assert server.log(keepalive_event="http") == []
    printed = server.output()
    assert "/healthz" not in printed and "/readyz" not in printed, printed
    assert "dropping connection" not in printed


def test_access_log_on_logs_each_request_with_its_fields(
    twistd: StartServer, framing: str
) -> None:
    metrics_port, options = metrics_port_and_options()
    server = twistd("--access-log", "on", *options)
    _fetch_every_page(server, metrics_port)
    server.stop()
    loud = [e for e in server.log() if e.get("log_level") in (LogLevel.warn, LogLevel.error)]
    assert loud == [], loud
    accessed = server.log(keepalive_event="http")
    assert {(e["method"], e["path"], e["code"]) for e in accessed} >= {
        ("GET", "/healthz", 200),
        ("GET", "/no/such/page", 404),
        ("HEAD", "/keepalive.js", 200),
        ("GET", "/metrics", 200),
    }
    assert {e["log_level"] for e in accessed} == {LogLevel.info}
    assert all(e["peer"].startswith("IPv4Address") for e in accessed)


# -- pages through twisted.web -------------------------------------------------


#: The pages, and the Content-Type each is served with.
PAGES = {
    "/": ("text/html; charset=utf-8", b"<!doctype html"),
    "/keepalive.js": ("text/javascript; charset=utf-8", b"export"),
}


@pytest.mark.parametrize("path", PAGES)
def test_a_page_revalidates_with_its_etag_and_last_modified(
    twistd: StartServer, framing: str, path: str
) -> None:
    server = twistd()
    assert server.port is not None
    content_type, start = PAGES[path]
    status, headers, body = fetch(server.port, path)
    assert status == 200 and start in body.lower()
    assert headers["content-type"] == content_type
    assert headers["x-content-type-options"] == "nosniff"
    etag, modified = headers["etag"], headers["last-modified"]
    assert headers["cache-control"] == "no-cache"
    assert fetch(server.port, path, **{"If-None-Match": etag})[:3:2] == (304, b"")
    assert fetch(server.port, path, **{"If-Modified-Since": modified})[:3:2] == (304, b"")
    # Another version's tag wins over a date that would match.
    status, _, again = fetch(
        server.port,
        path,
        **{"If-None-Match": '"another-version"', "If-Modified-Since": modified},
    )
    assert (status, again) == (200, body)


@pytest.mark.parametrize("path", PAGES)
def test_head_answers_with_the_headers_of_a_get(
    twistd: StartServer, framing: str, path: str
) -> None:
    server = twistd()
    assert server.port is not None
    _, got, body = fetch(server.port, path)
    status, head, nothing = fetch(server.port, path, "HEAD")
    assert (status, nothing) == (200, b"")
    assert head["content-length"] == str(len(body))
    assert head["content-type"] == got["content-type"] == PAGES[path][0]
    assert head["etag"] == got["etag"]
    assert head["last-modified"] == got["last-modified"]


def test_cors_origin_lets_that_origin_import_the_module(twistd: StartServer) -> None:
    server = twistd("--cors-origin", "https://app.example.com")
    assert server.port is not None
    allowed = {"Origin": "https://app.example.com"}
    _, headers, _ = fetch(server.port, "/keepalive.js", **allowed)
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert headers["vary"] == "Origin"
    _, other, _ = fetch(server.port, "/keepalive.js", Origin="https://evil.example.com")
    assert "access-control-allow-origin" not in other
    status, preflight, _ = fetch(server.port, "/keepalive.js", "OPTIONS", **allowed)
    assert status == 204
    assert preflight["access-control-allow-origin"] == "https://app.example.com"


def test_cors_origin_star_lets_any_origin_import_the_module(twistd: StartServer) -> None:
    server = twistd("--cors-origin", "*")
    assert server.port is not None
    _, headers, _ = fetch(server.port, "/keepalive.js", Origin="https://anywhere.example")
    assert headers["access-control-allow-origin"] == "*"


def test_without_cors_origin_no_other_origin_may_read_the_module(twistd: StartServer) -> None:
    server = twistd()
    assert server.port is not None
    _, headers, _ = fetch(server.port, "/keepalive.js", Origin="https://app.example.com")
    assert "access-control-allow-origin" not in headers


def test_demo_off_answers_404_at_the_root_and_still_serves_the_rest(
    twistd: StartServer, framing: str
) -> None:
    server = twistd("--demo", "off")
    assert server.port is not None
    assert fetch(server.port, "/")[0] == 404
    assert fetch(server.port, "/keepalive.js")[0] == 200
    assert fetch(server.port, "/healthz")[0] == 200
    with connect(server.url) as client:
        client.send("echo")
        assert client.recv(timeout=5) == "echo"


# -- the drain -----------------------------------------------------------------


class RawClient:
    """A WebSocket client on a plain socket that notes when the Close came."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(4096)
        assert response.startswith(b"HTTP/1.1 101"), response
        self.received = response.partition(b"\r\n\r\n")[2]
        self.closed_at: float | None = None
        self.close: tuple[int, bytes] | None = None

    def read(self) -> None:
        chunk = self.sock.recv(65536)
        self.received += chunk
        for opcode, payload in parse_frames(self.received):
            if opcode == CLOSE and self.closed_at is None:
                self.closed_at = time.monotonic()
                self.close = (int.from_bytes(payload[:2], "big"), payload[2:])
                self.sock.sendall(frame(CLOSE, payload))  # answer it: a clean close


def wait_for_closes(clients: list[RawClient], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(c.closed_at is None for c in clients) and time.monotonic() < deadline:
        waiting = [c.sock for c in clients if c.closed_at is None]
        readable, _, _ = select.select(waiting, [], [], 0.05)
        for client in clients:
            if client.sock in readable:
                client.read()


def wait_for_readyz(port: int, status: int, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if fetch(port, "/readyz")[0] == status:
            return time.monotonic() - started
        time.sleep(0.02)
    pytest.fail(f"/readyz did not answer {status} within {timeout} s")


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_readyz_turns_503_at_once_and_new_connections_are_served_during_the_grace(
    twistd: StartServer, framing: str, signal_number: int
) -> None:
    metrics_port, options = metrics_port_and_options()
    second = free_port()
    server = twistd(
        "--drain-grace", "3", "--drain-spread", "0",
        "--listen", f"tcp:{second}:interface=127.0.0.1", *options,
    )  # fmt: skip
    assert server.port is not None
    early = RawClient(server.port)
    sent = time.monotonic()
    server.process.send_signal(signal_number)
    wait_for_readyz(server.port, 503)
    for port in (server.port, second, metrics_port):
        for method in ("GET", "HEAD"):
            status, _, body = fetch(port, "/readyz", method)
            assert (status, body) == (503, b"draining\n" if method == "GET" else b""), port
            assert fetch(port, "/healthz", method)[0] == 200
    # During the grace the server still takes new connections and serves them.
    with connect(server.url, open_timeout=5) as newcomer:
        newcomer.send("served during the grace")
        assert newcomer.recv(timeout=5) == "served during the grace"
    late = RawClient(server.port)
    wait_for_closes([early, late], timeout=15)
    assert early.close == late.close == (1001, b"going away")
    assert early.closed_at is not None and early.closed_at - sent >= 2.5
    assert server.process.wait(15) == 0, server.output()


def test_the_1001s_arrive_spread_over_the_drain_spread(twistd: StartServer, framing: str) -> None:
    count, spread = 12, 3.0
    server = twistd("--drain-spread", str(spread))
    assert server.port is not None
    clients = [RawClient(server.port) for _ in range(count)]
    sent = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    wait_for_closes(clients, timeout=spread + 10)
    arrivals = sorted(c.closed_at - sent for c in clients if c.closed_at is not None)
    assert len(arrivals) == count
    assert {c.close for c in clients} == {(1001, b"going away")}
    # Slot i of 12 is at i/12 of the spread: the last at 2.75 s.
    span = arrivals[-1] - arrivals[0]
    assert 0.7 * spread * (count - 1) / count <= span <= spread + 1.0, arrivals
    # Steady, not bunched: no half second holds more than twice its share (2).
    per_half_second = [0] * (int(span / 0.5) + 1)
    for arrival in arrivals:
        per_half_second[int((arrival - arrivals[0]) / 0.5)] += 1
    assert max(per_half_second) <= 4, arrivals
    assert server.process.wait(15) == 0, server.output()
    [closing] = server.log(keepalive_event="shutdown")
    assert (closing["count"], closing["spread"]) == (count, spread)


def test_a_second_signal_skips_the_rest_of_the_grace(twistd: StartServer, framing: str) -> None:
    server = twistd("--drain-grace", "120", "--drain-spread", "120")
    assert server.port is not None
    clients = [RawClient(server.port) for _ in range(3)]
    server.process.send_signal(signal.SIGTERM)
    wait_for_readyz(server.port, 503)
    hurried = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    wait_for_closes(clients, timeout=10)
    assert all(c.close == (1001, b"going away") for c in clients)
    assert server.process.wait(10) == 0, server.output()
    assert time.monotonic() - hurried < 8
    assert len(server.log(keepalive_event="drain_hurry")) == 1


# -- metrics -------------------------------------------------------------------

_APPLICATION = """\
import time

from autobahn.twisted.websocket import WebSocketServerProtocol
from prometheus_client import Counter

MESSAGES = Counter("chat_messages", "Messages the chat application received.")


class Chat(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        MESSAGES.inc()
        if payload == b"block":
            time.sleep(1.2)  # a handler that blocks the reactor past a lag probe
        self.sendMessage(payload, isBinary)
"""


def scrape(port: int) -> dict[str, float]:
    _, _, body = fetch(port, "/metrics")
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if not sample.labels
    }


def test_metrics_carry_process_series_and_the_applications_own(
    twistd: StartServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = tmp_path / "operator"
    operator.mkdir()
    (operator / "chat.py").write_text(_APPLICATION)
    monkeypatch.setenv("PYTHONPATH", str(operator))
    metrics_port, options = metrics_port_and_options()
    server = twistd("--protocol", "chat.Chat", *options)
    with connect(server.url) as client:
        for text in ("one", "two", "block"):
            client.send(text)
            assert client.recv(timeout=5) == text
        first = scrape(metrics_port)
        second = scrape(metrics_port)
    assert first["chat_messages_total"] == 3.0
    # The descriptor ceiling is the scaling limit: both sides of it are there.
    assert 0 < first["process_open_fds"] < first["process_max_fds"]
    assert first["process_resident_memory_bytes"] > 0
    assert first["twisted_keepalive_connections_open"] == 1.0
    # The blocked handler delays a probe due every 0.5 s by at least 0.7 s,
    # and a scrape does not reset the worst lag.
    assert first["twisted_keepalive_reactor_lag_max_seconds"] >= 0.6
    assert second["twisted_keepalive_reactor_lag_max_seconds"] >= 0.6
    assert second["twisted_keepalive_reactor_lag_probes_seconds_count"] >= 1


def test_the_metrics_endpoint_serves_health_but_no_pages(twistd: StartServer) -> None:
    metrics_port, options = metrics_port_and_options()
    twistd(*options)
    assert fetch(metrics_port, "/healthz")[0] == 200
    assert fetch(metrics_port, "/")[0] == 404
    assert fetch(metrics_port, "/keepalive.js")[0] == 404
