"""
``twistd wskeepalive --workers N``: real worker processes sharing one port
(SO_REUSEPORT), started, stopped, killed and replaced, talked to by
``websockets``' own client from the test process.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from . import workers_support
from .conftest import StartServer, free_port, run_twistd
from .workers_support import (
    CONNECTIONS,
    OpenClients,
    StartSupervisor,
    scrape,
    wait_for_log,
    worker_pids,
)

supervisor = workers_support.supervisor
clients = workers_support.clients


def test_connections_are_spread_over_every_worker(
    twistd: StartServer, framing: str, clients: OpenClients
) -> None:
    server = twistd("--workers", "2")
    pids = worker_pids(server, 2)
    clients(server)
    opened = wait_for_log(server, lambda events: len(events) >= CONNECTIONS, keepalive_event="open")
    by_pid = {pid: sum(e["worker_pid"] == pid for e in opened) for pid in pids.values()}
    assert len(opened) == CONNECTIONS
    assert all(by_pid.values()), by_pid  # both workers serve connections
    assert set(by_pid) == {e["worker_pid"] for e in opened}


def test_sigterm_closes_every_connection_with_1001_and_exits_0(
    twistd: StartServer, framing: str, clients: OpenClients
) -> None:
    server = twistd("--workers", "2")
    worker_pids(server, 2)
    opened_clients = clients(server)
    for client in opened_clients:
        client.ping().wait(5)  # open, and served by a worker's reactor
    assert server.stop() == 0, server.output()
    for client in opened_clients:
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "going away")
    closes = server.log(keepalive_event="close", code=1001)
    assert len(closes) == CONNECTIONS
    assert len({event["worker_pid"] for event in closes}) == 2
    assert not server.log(keepalive_event="worker_crash")


def test_a_killed_worker_is_replaced_and_new_connections_succeed(
    twistd: StartServer, clients: OpenClients
) -> None:
    server = twistd("--workers", "2")
    pids = worker_pids(server, 2)
    os.kill(pids[0], signal.SIGKILL)
    [crash] = wait_for_log(server, bool, keepalive_event="worker_crash")
    assert (crash["worker"], crash["worker_pid"], crash["status"]) == (0, pids[0], "signal SIGKILL")
    replaced = wait_for_log(
        server, lambda events: len(events) >= 3, keepalive_event="worker_listening"
    )
    [replacement] = [
        e["worker_pid"] for e in replaced if e["worker"] == 0 and e["worker_pid"] != pids[0]
    ]
    assert server.process.poll() is None
    opened_clients = clients(server)
    for client in opened_clients:
        client.send("still here")
        assert client.recv(timeout=5) == "still here"
    opened = wait_for_log(server, lambda events: len(events) >= CONNECTIONS, keepalive_event="open")
    assert {e["worker_pid"] for e in opened} == {replacement, pids[1]}


def test_metrics_of_every_worker_from_one_endpoint(
    twistd: StartServer, framing: str, clients: OpenClients
) -> None:
    metrics_port = free_port()
    server = twistd("--workers", "2", "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1")
    pids = worker_pids(server, 2)
    clients(server)
    wait_for_log(server, lambda events: len(events) >= CONNECTIONS, keepalive_event="open")
    samples = scrape(metrics_port)
    for worker, pid in pids.items():
        assert samples[("twisted_keepalive_worker_pid", (("worker", str(worker)),))] == pid
        assert samples[("twisted_keepalive_worker_up", (("worker", str(worker)),))] == 1
        assert samples[("twisted_keepalive_worker_hung_total", (("worker", str(worker)),))] == 0
    # The parent's own process, beside its workers'.
    parent = ("worker", "parent")
    assert samples[("process_resident_memory_bytes", (parent,))] > 0
    assert any(name == "python_info" and parent in labels for name, labels in samples)
    open_now = [samples[("twisted_keepalive_connections_open", (("worker", w),))] for w in "01"]
    assert sum(open_now) == CONNECTIONS
    assert all(open_now)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--workers", "0"], "--workers must be a positive whole number, not '0'"),
        (["--workers", "-2"], "--workers must be a positive whole number, not '-2'"),
        (["--workers", "two"], "--workers must be a positive whole number, not 'two'"),
        (["--workers", "1.5"], "--workers must be a positive whole number, not '1.5'"),
        (
            ["--workers", "2", "--listen", "unix:/tmp/wskeepalive-test.sock"],
            "cannot be shared by --workers: SO_REUSEPORT does not balance unix sockets",
        ),
    ],
)
def test_bad_workers_values_are_usage_errors(
    tmp_path: Path, options: list[str], message: str
) -> None:
    result = run_twistd("-n", "--pidfile=", "wskeepalive", *options, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize("reactor", ["poll", "asyncio"])
def test_the_reactor_given_to_twistd_runs_in_every_worker(
    supervisor: StartSupervisor, clients: OpenClients, reactor: str
) -> None:
    server = supervisor(twistd_options=["--reactor", reactor])
    listening = server.log(keepalive_event="worker_listening")
    assert [e["reactor"] for e in listening] == [reactor, reactor]
    [started] = server.log(keepalive_event="workers_start")
    assert started["reactor"] == reactor
    for client in clients(server):
        client.send("through " + reactor)
        assert client.recv(timeout=5) == "through " + reactor
    opened = wait_for_log(server, lambda events: len(events) >= CONNECTIONS, keepalive_event="open")
    assert len({e["worker_pid"] for e in opened}) == 2


def test_the_default_reactor_is_named_in_the_workers(supervisor: StartSupervisor) -> None:
    server = supervisor()
    listening = server.log(keepalive_event="worker_listening")
    # twistd's default on Linux; the workers install it by this name.
    assert [e["reactor"] for e in listening] == ["epoll", "epoll"]


def test_a_second_sigterm_hurries_every_worker_through_its_grace(
    supervisor: StartSupervisor, clients: OpenClients
) -> None:
    server = supervisor("--drain-grace", "60")
    pids = worker_pids(server, 2)
    clients(server)
    server.process.send_signal(signal.SIGTERM)
    wait_for_log(
        server, lambda events: len(events) >= 2, keepalive_event="drain_start"
    )  # both workers in their 60 s grace
    server.process.send_signal(signal.SIGTERM)
    # Well before the grace would have ended.
    assert server.process.wait(timeout=30) == 0, server.output()
    hurried = server.log(keepalive_event="drain_hurry")
    assert {e["worker_pid"] for e in hurried if "worker_pid" in e} == set(pids.values())
    closes = server.log(keepalive_event="close", code=1001)
    assert len(closes) == CONNECTIONS


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_process_group_drains_once_with_its_grace(
    supervisor: StartSupervisor, clients: OpenClients, signal_number: int
) -> None:
    # A terminal's Ctrl-C (SIGINT) and systemd's default KillMode (SIGTERM)
    # reach every worker directly as well as through the parent: still one
    # stop, not a second signal that would skip the grace.
    server = supervisor("--drain-grace", "3", "--drain-spread", "0", own_group=True)
    worker_pids(server, 2)
    opened = clients(server)
    for client in opened:
        client.ping().wait(5)
    sent = time.monotonic()
    os.killpg(server.process.pid, signal_number)
    wait_for_log(server, lambda events: len(events) >= 2, keepalive_event="drain_start")
    with connect(server.url, open_timeout=5) as newcomer:
        newcomer.send("served during the grace")
        assert newcomer.recv(timeout=5) == "served during the grace"
    for client in opened:
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert time.monotonic() - sent >= 2.5, "the grace was cut short"
    assert server.process.wait(30) == 0, server.output()
    assert not server.log(keepalive_event="drain_hurry")
