"""
``ReconnectingClient`` against a real ``twistd wskeepalive`` that freezes
(SIGSTOP), dies (SIGKILL), drains (SIGTERM) and comes back on the same port;
the client runs in its own process (tests/peers/reconnecting_peer.py) and
prints what it saw.
"""

from __future__ import annotations

import os
import signal
import time

from tests.faults.support import record

from .conftest import Peer, Server, StartPeer, StartServer

# The server's settings: what the client must not be confused by.
SERVER = ("--ping-interval", "1", "--ping-timeout", "1", "--close-timeout", "1")
# The client's: its heartbeat is what notices a frozen server.
INTERVAL, TIMEOUT, CLOSE_TIMEOUT = 0.5, 0.5, 0.5
INITIAL_DELAY, MAX_DELAY, HANDSHAKE_TIMEOUT = 0.3, 2.0, 1.0
NOTICE_BOUND = INTERVAL + TIMEOUT + CLOSE_TIMEOUT
#: The longest one failed attempt and its wait may take, seconds.
RETRY_BOUND = MAX_DELAY + HANDSHAKE_TIMEOUT
#: Scheduling slack of a loaded two-core machine, seconds.
SLACK = 1.5


def start_client(peers: StartPeer, server: Server, *extra: str) -> Peer:
    client = peers(
        "reconnecting", server.url,
        "--ping-interval", str(INTERVAL), "--ping-timeout", str(TIMEOUT),
        "--close-timeout", str(CLOSE_TIMEOUT), "--initial-delay", str(INITIAL_DELAY),
        "--max-delay", str(MAX_DELAY), "--handshake-timeout", str(HANDSHAKE_TIMEOUT), *extra,
    )  # fmt: skip
    client.wait_for("open")
    return client


def restart_on_same_port(twistd: StartServer, server: Server) -> Server:
    return twistd(*SERVER, listen=f"tcp:{server.port}:interface=127.0.0.1")


def ceiling(attempt: int) -> float:
    """The backoff's longest wait before retry ``attempt`` with these settings."""
    return min(MAX_DELAY, INITIAL_DELAY * 2 ** max(0, attempt - 1))


def assert_backed_off(client: Peer) -> None:
    for reconnect in client.of("reconnect"):
        assert 0 <= reconnect["delay"] <= ceiling(reconnect["attempt"]) + 1e-9, reconnect


def test_a_frozen_server_is_noticed_retried_with_backoff_and_rejoined(
    twistd: StartServer, peers: StartPeer
) -> None:
    server = twistd(*SERVER)
    client = start_client(peers, server)
    os.kill(server.process.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        closed = client.wait_for("close", timeout=NOTICE_BOUND + SLACK + 5)
        # The kernel still accepts TCP for the frozen process, so every
        # handshake times out: attempts that count as failed, backing off.
        third = client.wait_for("reconnect", attempt=3, timeout=3 * RETRY_BOUND + 10)
    finally:
        # Taken first: a handshake already sent may complete at once.
        resumed_at = time.monotonic()
        os.kill(server.process.pid, signal.SIGCONT)
    reopened = client.wait_for("open", since=resumed_at, timeout=RETRY_BOUND + SLACK + 5)
    record(
        "reconnecting client: server frozen",
        noticed_after=round(closed["t"] - frozen_at, 3),
        cause=closed["timeout"],
        attempts_while_frozen=len([e for e in client.of("reconnect") if e["t"] < resumed_at]),
        reopened_after_resume=round(reopened["t"] - resumed_at, 3),
        why=sorted({e["why"] for e in client.of("reconnect")}),
    )
    assert closed["timeout"] == "peer_silent", closed
    assert closed["t"] - frozen_at <= NOTICE_BOUND + SLACK
    assert third["t"] <= resumed_at
    # Every attempt since the last open counted, the failed handshakes too.
    retries = [e for e in client.of("reconnect") if frozen_at <= e["t"] <= reopened["t"]]
    assert reopened["attempts"] == len(retries) >= 3, (reopened, retries)
    assert reopened["t"] - resumed_at <= RETRY_BOUND + SLACK
    assert_backed_off(client)


def test_a_killed_server_is_retried_until_it_is_back(
    twistd: StartServer, peers: StartPeer
) -> None:
    server = twistd(*SERVER)
    client = start_client(peers, server)
    killed_at = time.monotonic()
    server.process.kill()
    server.process.wait()
    closed = client.wait_for("close", since=killed_at, timeout=NOTICE_BOUND + SLACK + 5)
    refused = client.wait_for("reconnect", attempt=3, timeout=3 * RETRY_BOUND + 10)
    restarting_at = time.monotonic()
    back = restart_on_same_port(twistd, server)
    back_at = time.monotonic()  # accepting: the client may already be in
    reopened = client.wait_for("open", since=restarting_at, timeout=RETRY_BOUND + SLACK + 5)
    record(
        "reconnecting client: server killed",
        noticed_after=round(closed["t"] - killed_at, 3),
        refused_attempts=len([e for e in client.of("reconnect") if e["t"] < restarting_at]) - 1,
        reopened_after_restart=round(reopened["t"] - back_at, 3),
    )
    # The kernel closes a killed process's sockets: noticed by TCP at once.
    assert closed["t"] - killed_at <= SLACK
    assert closed["timeout"] is None
    assert refused["why"].startswith("connecting failed: Connection was refused"), refused
    assert reopened["t"] - back_at <= RETRY_BOUND + SLACK
    assert_backed_off(client)
    assert back.log(keepalive_event="open")


def test_a_draining_server_sends_its_clients_elsewhere_with_1001(
    twistd: StartServer, peers: StartPeer
) -> None:
    server = twistd(*SERVER, "--drain-spread", "0")
    client = start_client(peers, server)
    drained_at = time.monotonic()
    assert server.stop() == 0
    closed = client.wait_for("close", since=drained_at, timeout=SLACK + 5)
    reconnect = client.wait_for("reconnect", since=drained_at, timeout=SLACK + 5)
    back = restart_on_same_port(twistd, server)
    reopened = client.wait_for("open", since=drained_at, timeout=3 * RETRY_BOUND + SLACK)
    assert closed["code"] == 1001, closed
    assert reconnect["attempt"] == 1
    assert reconnect["why"].startswith("the server closed with 1001"), reconnect
    assert reopened["t"] >= closed["t"]
    assert back.log(keepalive_event="open")


def test_stopping_the_client_closes_with_1000_and_exits(
    twistd: StartServer, peers: StartPeer
) -> None:
    server = twistd(*SERVER)
    client = start_client(peers, server, "--clients", "3")
    for number in (2, 3):
        client.wait_for("open", client=number)
    client.process.send_signal(signal.SIGTERM)
    client.wait_for("stopped", timeout=CLOSE_TIMEOUT + SLACK + 5)
    assert client.process.wait(10) == 0
    deadline = time.monotonic() + 5
    while len(server.log(keepalive_event="close")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    closes = server.log(keepalive_event="close")
    assert [(e["code"], e["clean"]) for e in closes] == [(1000, True)] * 3, closes
    assert client.of("reconnect") == []
