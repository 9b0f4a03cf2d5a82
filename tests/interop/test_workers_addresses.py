"""
``--workers`` on the addresses operators write: IPv6 by its interface
whatever the endpoint's prefix, and a bad address refused as one usage line
before anything starts.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from websockets.sync.client import connect

from . import workers_support
from .workers_support import StartSupervisor, usage_error, worker_pids

supervisor = workers_support.supervisor

pytestmark = pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 in this Python")


def test_tcp_with_an_ipv6_interface_listens_on_ipv6(supervisor: StartSupervisor) -> None:
    server = supervisor(listen="tcp:0:interface=\\:\\:1", host="::1")
    pids = worker_pids(server, 2)
    with socket.create_connection(("::1", server.port), timeout=5):
        pass
    for _ in range(8):
        with connect(server.url, open_timeout=10) as client:
            client.send("over IPv6")
            assert client.recv(timeout=5) == "over IPv6"
    opened = server.log(keepalive_event="open")
    assert {e["worker_pid"] for e in opened} <= set(pids.values())


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        (
            "tcp:0:interface=localhost",
            "cannot be shared by --workers: the interface must be an IPv4 or IPv6 address, "
            "not 'localhost'",
        ),
        (
            "tcp:0:interface=::1",
            "interface is given twice (write each : of an IPv6 address as \\:",
        ),
        (
            "tcp6:0:interface=300.1.1.1",
            "the interface must be an IPv4 or IPv6 address, not '300.1.1.1'",
        ),
    ],
)
def test_a_bad_interface_is_one_usage_line(tmp_path: Path, listen: str, message: str) -> None:
    assert message in usage_error(tmp_path, "--workers", "2", "--listen", listen)


@pytest.mark.parametrize("workers", [["--workers", "2"], []], ids=["--workers 2", "one process"])
def test_a_port_another_supervisor_serves_is_in_use(
    supervisor: StartSupervisor, tmp_path: Path, workers: list[str]
) -> None:
    # Its sockets carry SO_REUSEPORT, which would let a second --workers
    # server (same user) join the port silently and take half its clients.
    first = supervisor()
    worker_pids(first, 2)
    printed = usage_error(
        tmp_path, *workers, "--listen", f"tcp:{first.port}:interface=127.0.0.1"
    )  # fmt: skip
    assert f"cannot listen on 127.0.0.1 port {first.port}: Address already in use" in printed
    assert "Traceback" not in printed
