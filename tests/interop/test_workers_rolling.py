"""
SIGHUP to ``twistd wskeepalive --workers N``: the workers are replaced one
at a time while the port keeps accepting, the old workers' clients are told
1001 "going away", and the new workers run the code installed now.  Also
what goes wrong on the way: a new worker that cannot start, an old one that
dies, SIGTERM in the middle, a second SIGHUP, and SIGHUP without workers.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from . import workers_support
from .conftest import Server, StartServer, free_port
from .workers_support import (
    CONNECTIONS,
    OpenClients,
    StartSupervisor,
    alive,
    per_worker,
    scrape,
    signal_parent,
    stopped,
    unresponsive_client,
    wait_for_log,
    worker_pids,
)

supervisor = workers_support.supervisor
clients = workers_support.clients

#: Generous: a rolling restart of two workers takes a few seconds here.
RESTART_TIMEOUT = 60.0


def wait_for_done(server: Server, count: int = 1) -> None:
    done = wait_for_log(
        server, lambda events: len(events) >= count, RESTART_TIMEOUT,
        keepalive_event="rolling_restart_done",
    )  # fmt: skip
    assert len(done) >= count, server.output()


class Connector:
    """
    Opens a new connection after another until stopped, each echoing once.
    A connection refused, reset or closed before its opening handshake
    completed is a failure; one opened and then told 1001 (it landed on a
    retiring worker) went away as it should, and is counted apart.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.attempts = 0
        self.went_away = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Connector:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.attempts += 1
            try:
                client = connect(self.url, open_timeout=10, close_timeout=10)
            except (OSError, InvalidHandshake, TimeoutError) as e:
                self.failures.append(f"{type(e).__name__}: {e}")
                continue
            with client:
                try:
                    client.send("hello")
                    if client.recv(timeout=10) != "hello":
                        self.failures.append("wrong echo")
                except ConnectionClosed as e:
                    if e.rcvd is not None and e.rcvd.code == 1001:
                        self.went_away += 1
                    else:
                        self.failures.append(f"closed without 1001: {e}")
                except TimeoutError as e:
                    self.failures.append(f"no echo: {e}")


def test_sighup_replaces_every_worker_while_new_connections_all_succeed(
    supervisor: StartSupervisor, clients: OpenClients
) -> None:
    server = supervisor("--close-timeout", "3")
    old = worker_pids(server, 2)
    opened = clients(server)
    for client in opened:
        client.ping().wait(5)
    with Connector(server.url) as connector:
        time.sleep(0.5)
        signal_parent(server)
        wait_for_done(server)
        time.sleep(0.5)
    assert connector.attempts > 10, connector.attempts
    assert connector.failures == []
    # The old workers' clients were told, each with 1001.
    for client in opened:
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=10)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "going away")
    # Same seats, new processes, the old ones gone.
    retired = server.log(keepalive_event="worker_retired")
    assert sorted((e["worker"], e["worker_pid"]) for e in retired) == sorted(old.items())
    new = {
        e["worker"]: e["worker_pid"]
        for e in server.log(keepalive_event="worker_listening")
        if e["worker_pid"] not in old.values()
    }
    assert set(new) == {0, 1}
    assert not any(alive(pid) for pid in old.values())
    # And they serve.
    for client in clients(server):
        client.send("to the new ones")
        assert client.recv(timeout=5) == "to the new ones"
    late_opens = server.log(keepalive_event="open")[-CONNECTIONS:]
    assert {e["worker_pid"] for e in late_opens} == set(new.values())
    assert not server.log(keepalive_event="worker_crash")


def test_the_metrics_follow_the_new_workers(supervisor: StartSupervisor) -> None:
    metrics_port = free_port()
    server = supervisor("--metrics", f"tcp:{metrics_port}:interface=127.0.0.1")
    old = worker_pids(server, 2)
    signal_parent(server)
    wait_for_done(server)
    new = {
        str(e["worker"]): e["worker_pid"]
        for e in server.log(keepalive_event="worker_listening")
        if e["worker_pid"] not in old.values()
    }
    samples = scrape(metrics_port)
    assert per_worker(samples, "twisted_keepalive_worker_pid") == new
    assert per_worker(samples, "twisted_keepalive_worker_up") == {"0": 1, "1": 1}
    # A rolling restart is no crash.
    assert per_worker(samples, "twisted_keepalive_worker_restarts_total") == {"0": 0, "1": 0}


REQUEST = (
    b"GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def close_code(frames: bytes) -> int | None:
    """The code of the Close frame among a server's small frames (unmasked, short), if any."""
    while len(frames) >= 2:
        opcode, length = frames[0] & 0x0F, frames[1] & 0x7F
        if len(frames) < 2 + length:
            return None
        if opcode == 0x8:
            return int.from_bytes(frames[2:4], "big")
        frames = frames[2 + length :]
    return None


def test_a_handshake_under_way_when_its_worker_retires_completes_then_gets_1001(
    supervisor: StartSupervisor,
) -> None:
    server = supervisor("--close-timeout", "2", "--drain-spread", "0")
    old = worker_pids(server, 2)
    assert server.port is not None
    halfway = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(8)]
    try:
        for sock in halfway:
            sock.sendall(REQUEST[:40])
        time.sleep(0.5)  # accepted, every one: their requests under way
        signal_parent(server)
        wait_for_log(
            server, bool, RESTART_TIMEOUT, keepalive_event="worker_retiring", worker_pid=old[0]
        )
        for sock in halfway:
            sock.sendall(REQUEST[40:])
        # Read them all as the bytes come (the two workers retire in turn),
        # and close each once it has its 1001, as a client would.
        received = dict.fromkeys(halfway, b"")
        deadline = time.monotonic() + RESTART_TIMEOUT
        while received and time.monotonic() < deadline:
            readable, _, _ = select.select(list(received), [], [], 1.0)
            for sock in readable:
                chunk = sock.recv(4096)
                assert chunk, f"closed after {received[sock]!r}"
                received[sock] += chunk
                head, end_of_head, frames = received[sock].partition(b"\r\n\r\n")
                if end_of_head:
                    assert head.startswith(b"HTTP/1.1 101"), head
                close = close_code(frames)
                if close is not None:
                    assert close == 1001, frames
                    del received[sock]
                    sock.close()
        assert not received, received
    finally:
        for sock in halfway:
            sock.close()
    wait_for_done(server)


def test_one_seat_at_a_time(supervisor: StartSupervisor) -> None:
    server = supervisor("--close-timeout", "2", workers=3)
    worker_pids(server, 3)
    signal_parent(server)
    wait_for_done(server)
    steps = [
        (e["keepalive_event"], e.get("worker"))
        for e in server.log()
        if e.get("keepalive_event") in ("worker_start", "worker_retire", "worker_retired")
    ][3:]  # after the first three starts
    assert steps == [
        ("worker_start", 0), ("worker_retire", 0), ("worker_retired", 0),
        ("worker_start", 1), ("worker_retire", 1), ("worker_retired", 1),
        ("worker_start", 2), ("worker_retire", 2), ("worker_retired", 2),
    ]  # fmt: skip
    [start] = server.log(keepalive_event="rolling_restart_start")
    assert start["count"] == 3


VERSIONED = """
from autobahn.twisted.websocket import WebSocketServerProtocol

class Versioned(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage({version!r}.encode())
"""


@pytest.fixture
def operator_module(tmp_path: Path) -> Iterator[Path]:
    """A folder holding ``deployed.py``, an operator's protocol module, written per test."""
    folder = tmp_path / "operator"
    folder.mkdir()
    yield folder


def deploy(folder: Path, text: str) -> None:
    # Another size each time, so that Python's cached bytecode never stands in.
    (folder / "deployed.py").write_text(text + "#" * len(os.listdir(folder)) * 7 + "\n")
    for cached in (folder / "__pycache__").glob("*") if (folder / "__pycache__").exists() else ():
        cached.unlink()


def answer(server: Server) -> str:
    with connect(server.url, open_timeout=10) as client:
        client.send("version?")
        return str(client.recv(timeout=5))


def test_sighup_loads_the_code_installed_since(
    supervisor: StartSupervisor, operator_module: Path
) -> None:
    deploy(operator_module, VERSIONED.format(version="v1"))
    server = supervisor("--protocol", "deployed.Versioned", import_from=operator_module)
    assert answer(server) == "v1"
    deploy(operator_module, VERSIONED.format(version="v2"))
    signal_parent(server)
    wait_for_done(server)
    assert {answer(server) for _ in range(16)} == {"v2"}


def test_a_new_worker_that_cannot_start_stops_the_restart_and_the_old_ones_serve_on(
    supervisor: StartSupervisor, operator_module: Path
) -> None:
    deploy(operator_module, VERSIONED.format(version="v1"))
    server = supervisor("--protocol", "deployed.Versioned", import_from=operator_module)
    old = worker_pids(server, 2)
    deploy(operator_module, "raise RuntimeError('a bad deploy')\n")
    signal_parent(server)
    [failed] = wait_for_log(server, bool, RESTART_TIMEOUT, keepalive_event="rolling_restart_failed")
    assert failed["worker"] == 0
    assert "exited before it listened" in failed["why"]
    assert failed["status"] == "exit status 2"
    assert "a bad deploy" in server.output()  # its usage error, relayed from stderr
    assert not server.log(keepalive_event="worker_retire")
    assert not server.log(keepalive_event="rolling_restart_done")
    assert all(alive(pid) for pid in old.values())
    assert {answer(server) for _ in range(16)} == {"v1"}
    # Fixed, the next SIGHUP goes through.
    deploy(operator_module, VERSIONED.format(version="v3"))
    signal_parent(server)
    wait_for_done(server)
    assert {answer(server) for _ in range(16)} == {"v3"}


@contextlib.contextmanager
def retiring_slowly(server: Server, count: int = 8) -> Iterator[None]:
    """
    A rolling restart whose first old worker is retiring when the block
    begins, slowly: ``count`` clients never answer its 1001, so it waits its
    close timeout.
    """
    assert server.port is not None
    socks = [unresponsive_client(server.port) for _ in range(count)]
    try:
        wait_for_log(server, lambda events: len(events) >= count, keepalive_event="open")
        signal_parent(server)
        wait_for_log(server, bool, RESTART_TIMEOUT, keepalive_event="worker_retire")
        yield
    finally:
        for sock in socks:
            sock.close()


def test_sigterm_during_a_rolling_restart_stops_everything_and_exits_0(
    supervisor: StartSupervisor,
) -> None:
    server = supervisor("--close-timeout", "4")
    old = worker_pids(server, 2)
    with retiring_slowly(server):
        assert server.stop(timeout=30) == 0, server.output()
    every_pid = {e["worker_pid"] for e in server.log(keepalive_event="worker_start")}
    assert len(every_pid) == 3  # two old ones, and seat 0's new one
    assert set(old.values()) < every_pid
    assert not any(alive(pid) for pid in every_pid)
    assert not server.log(keepalive_event="rolling_restart_done")
    assert not server.log(keepalive_event="worker_crash")
    assert not server.log(keepalive_event="workers_kill")


def test_an_old_worker_that_dies_during_the_restart_is_replaced_and_the_restart_ends(
    supervisor: StartSupervisor,
) -> None:
    server = supervisor("--close-timeout", "4")
    old = worker_pids(server, 2)
    with retiring_slowly(server):
        os.kill(old[1], signal.SIGKILL)
        [crash] = wait_for_log(server, bool, keepalive_event="worker_crash")
        assert (crash["worker"], crash["worker_pid"]) == (1, old[1])
        wait_for_done(server)
    # Seat 1's replacement, started during the restart, already ran the new
    # code: it was not replaced a second time.
    seat_1 = [e["worker_pid"] for e in server.log(keepalive_event="worker_start", worker=1)]
    assert len(seat_1) == 2
    assert [e["worker"] for e in server.log(keepalive_event="worker_retire")] == [0]
    for _ in range(8):
        with connect(server.url, open_timeout=10) as client:
            client.send("after")
            assert client.recv(timeout=5) == "after"


def test_a_retiring_worker_that_hangs_is_killed_after_the_stop_bound_not_before(
    supervisor: StartSupervisor,
) -> None:
    # Liveness leaves retiring workers alone (the probe timeout is 1 s);
    # the rolling restart's own bound -- the drain's spread and close
    # timeout, and 5 s -- ends it.
    server = supervisor(
        "--close-timeout", "1", "--drain-spread", "0.5", "--worker-timeout", "1"
    )  # fmt: skip
    old = worker_pids(server, 2)
    with retiring_slowly(server):
        with stopped(old[0]):
            [killed] = wait_for_log(
                server, bool, RESTART_TIMEOUT, keepalive_event="worker_retire_kill"
            )
        assert (killed["worker"], killed["worker_pid"], killed["seconds"]) == (0, old[0], 6.5)
        wait_for_done(server)
    assert not server.log(keepalive_event="worker_hung")
    assert not server.log(keepalive_event="worker_crash")
    assert not alive(old[0])


def test_a_sighup_during_a_failing_restart_runs_after_it(
    supervisor: StartSupervisor, operator_module: Path
) -> None:
    # The operator fixes a bad deploy and sends SIGHUP again before the
    # first restart has found out: that SIGHUP is not lost.
    deploy(operator_module, VERSIONED.format(version="v1"))
    server = supervisor("--protocol", "deployed.Versioned", import_from=operator_module)
    imported = operator_module / "imported"
    deploy(
        operator_module,
        f"import pathlib, time\npathlib.Path({str(imported)!r}).touch()\n"
        "time.sleep(3)\nraise RuntimeError('a bad deploy')\n",
    )
    signal_parent(server)
    deadline = time.monotonic() + RESTART_TIMEOUT
    while not imported.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    deploy(operator_module, VERSIONED.format(version="v2"))
    signal_parent(server)
    wait_for_done(server)
    assert len(server.log(keepalive_event="rolling_restart_failed")) == 1
    assert len(server.log(keepalive_event="rolling_restart_queued")) == 1
    assert {answer(server) for _ in range(16)} == {"v2"}


def test_a_sighup_during_a_rolling_restart_queues_one_more(supervisor: StartSupervisor) -> None:
    server = supervisor("--close-timeout", "2")
    worker_pids(server, 2)
    signal_parent(server)
    wait_for_log(server, bool, RESTART_TIMEOUT, keepalive_event="rolling_restart_start")
    signal_parent(server)
    time.sleep(0.3)  # two deliveries: the kernel merges signals still pending
    signal_parent(server)
    wait_for_done(server, count=2)
    time.sleep(1)
    assert len(server.log(keepalive_event="rolling_restart_start")) == 2  # two coalesced
    assert len(server.log(keepalive_event="rolling_restart_queued")) == 2
    assert len(server.log(keepalive_event="worker_retired")) == 4


def test_sighup_without_workers_is_logged_and_the_server_serves_on(twistd: StartServer) -> None:
    server = twistd()
    server.process.send_signal(signal.SIGHUP)
    assert wait_for_log(server, bool, keepalive_event="rolling_restart_unavailable")
    # The JSON log and twistd's text output are written apart: wait for both.
    deadline = time.monotonic() + 10
    while "needs --workers" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "needs --workers" in server.output()
    assert server.process.poll() is None
    with connect(server.url, open_timeout=10) as client:
        client.send("still here")
        assert client.recv(timeout=5) == "still here"
