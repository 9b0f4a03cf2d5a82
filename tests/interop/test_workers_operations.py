"""
``twistd wskeepalive --workers N`` as an operator runs it behind a load
balancer: the probes on the shared port (whichever worker the kernel hands
them to) and on the parent's ``--metrics`` endpoint, ``/readyz`` 503 on all
of them from the moment a stop begins, and every option reaching every
worker, seen in what each worker does.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from twisted.logger import LogLevel
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from . import workers_support
from .conftest import free_port
from .test_twistd_operations import fetch
from .workers_support import StartSupervisor, per_worker, scrape, wait_for_log, worker_pids

supervisor = workers_support.supervisor

#: Plain requests per check: each lands on a worker by the kernel's hash, so
#: all 24 on one of two workers has a chance of 2 in 2**24.
REQUESTS = 24


def test_probes_answer_on_the_shared_port_and_the_parent_s_and_turn_503_at_once(
    supervisor: StartSupervisor,
) -> None:
    metrics_port = free_port()
    server = supervisor(
        "--drain-grace", "3", "--drain-spread", "0", "--access-log", "on",
        "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1",
    )  # fmt: skip
    pids = worker_pids(server, 2)
    assert server.port is not None
    for port in (server.port, metrics_port):
        for method in ("GET", "HEAD") * (REQUESTS // 2):
            assert fetch(port, "/healthz", method)[0] == 200
            status, _, body = fetch(port, "/readyz", method)
            assert (status, body) == (200, b"ready\n" if method == "GET" else b"")
    probed = wait_for_log(
        server, lambda events: len(events) >= 2 * REQUESTS, keepalive_event="http", path="/readyz"
    )
    # Both workers answered on the shared port, the parent on its endpoint.
    assert {e.get("worker_pid") for e in probed} == {*pids.values(), None}

    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while fetch(metrics_port, "/readyz")[0] != 503 and time.monotonic() < deadline:
        time.sleep(0.02)
    # Within the grace: every worker and the parent say 503, and still serve.
    for port in (server.port, metrics_port):
        for method in ("GET", "HEAD") * (REQUESTS // 2):
            status, _, body = fetch(port, "/readyz", method)
            assert (status, body) == (503, b"draining\n" if method == "GET" else b""), port
            assert fetch(port, "/healthz", method)[0] == 200
    with connect(server.url, open_timeout=5) as newcomer:
        newcomer.send("served during the grace")
        assert newcomer.recv(timeout=5) == "served during the grace"
    refused = server.log(keepalive_event="http", path="/readyz", code=503)
    assert {e.get("worker_pid") for e in refused} == {*pids.values(), None}
    assert server.process.wait(30) == 0, server.output()
    loud = [e for e in server.log() if e.get("log_level") in (LogLevel.warn, LogLevel.error)]
    assert loud == [], loud


_APPLICATION = """\
from autobahn.twisted.websocket import WebSocketServerProtocol
from prometheus_client import Counter

MESSAGES = Counter("chat_messages", "Messages the chat application received.")


class Chat(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        MESSAGES.inc()
        self.sendMessage(payload.upper(), isBinary)
"""


def test_every_option_reaches_every_worker(supervisor: StartSupervisor, tmp_path: Path) -> None:
    operator = tmp_path / "operator"
    operator.mkdir()
    (operator / "chat.py").write_text(_APPLICATION)
    metrics_port = free_port()
    server = supervisor(
        "--protocol", "chat.Chat",
        "--ping-interval", "0.3", "--ping-timeout", "5", "--close-timeout", "4",
        "--max-message-size", "1000",
        "--demo", "off",
        "--cors-origin", "https://app.example.com",
        "--browser-heartbeat", "off",
        "--access-log", "on",
        "--gc", "python",
        "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1",
        import_from=operator,
    )  # fmt: skip
    pids = worker_pids(server, 2)
    assert server.port is not None
    # Each worker says what it serves, with the settings it was given.
    started = server.log(keepalive_event="start")
    assert {e["worker_pid"] for e in started} == set(pids.values())
    for event in started:
        assert event["protocol"] == "Chat"
        assert (event["ping_interval"], event["ping_timeout"], event["close_timeout"]) == (
            0.3,
            5.0,
            4.0,
        )
        assert event["browser_heartbeat"] is False
    # The pages, as each worker serves them.
    for _ in range(REQUESTS // 2):
        assert fetch(server.port, "/")[0] == 404  # --demo off
        _, headers, _ = fetch(server.port, "/keepalive.js", Origin="https://app.example.com")
        assert headers["access-control-allow-origin"] == "https://app.example.com"
    pages = wait_for_log(
        server, lambda events: len(events) >= REQUESTS, keepalive_event="http"
    )  # fmt: skip
    assert {e["worker_pid"] for e in pages if e["path"] == "/"} == set(pids.values())
    # The protocol, the keepalive and the message limit, on every worker.
    for _ in range(REQUESTS // 2):
        with connect(server.url, open_timeout=10) as client:
            client.send("hello")
            assert client.recv(timeout=5) == "HELLO"
            time.sleep(0.5)  # a keepalive round trip at 0.3 s, none at the default 20 s
            client.send(b"x" * 1001)
            with pytest.raises(ConnectionClosedError) as closed:
                client.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    closes = wait_for_log(
        server, lambda events: len(events) >= REQUESTS // 2, keepalive_event="close"
    )  # fmt: skip
    assert {e["worker_pid"] for e in closes} == set(pids.values())
    assert all(e["code"] == 1009 and e["latency"] > 0 for e in closes), closes
    # The application's own metric, labelled by worker.
    counted = per_worker(scrape(metrics_port), "chat_messages_total")
    # The parent imported the class too, to check --protocol: its count is 0.
    assert counted.pop("parent") == 0
    assert set(counted) == {"0", "1"}
    assert sum(counted.values()) == REQUESTS // 2
