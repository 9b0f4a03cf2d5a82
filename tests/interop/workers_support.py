"""
Running ``twistd wskeepalive --workers N`` for the supervision tests: with
twistd's own options (``--reactor``) before the subcommand, on any address
(IPv6, ``tcp:0``), optionally inside a network namespace of its own; ready
once every worker has logged ``worker_listening``.  Also the log readers the
tests share.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import ClientConnection, connect

from tests.peers.raw_peer import handshake

from .conftest import TWISTD, Event, Server, free_port, run_twistd, subprocess_env
from .twistd_side import LOG_PATH_VARIABLE

#: Seconds a supervisor gets for every worker to log ``worker_listening``.
START_TIMEOUT = 30.0

StartSupervisor = Callable[..., Server]

OpenClients = Callable[[Server], list[ClientConnection]]

#: Connections per check: the kernel hashes each to a worker, so all of 24
#: landing on one of two workers has a chance of 2 in 2**24.
CONNECTIONS = 24


@pytest.fixture
def clients() -> Iterator[OpenClients]:
    """Open ``CONNECTIONS`` clients to a server; all closed at the end."""
    with contextlib.ExitStack() as stack:

        def open_clients(server: Server) -> list[ClientConnection]:
            return [
                stack.enter_context(connect(server.url, open_timeout=10))
                for _ in range(CONNECTIONS)
            ]

        yield open_clients


def wait_for_log(
    server: Server, enough: Callable[[list[Event]], bool], timeout: float = 15.0, **fields: object
) -> list[Event]:
    """The server's log events with these fields, once ``enough`` of them arrived."""
    # Workers' events reach the log through the parent: a moment later.
    deadline = time.monotonic() + timeout
    while True:
        events = server.log(**fields)
        if enough(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def worker_pids(server: Server, count: int, timeout: float = 15.0) -> dict[int, int]:
    """Worker index -> pid of each, once ``count`` workers listen."""
    listening = wait_for_log(
        server, lambda events: len({e["worker"] for e in events}) >= count, timeout,
        keepalive_event="worker_listening",
    )  # fmt: skip
    return {event["worker"]: event["worker_pid"] for event in listening}


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (and is not a zombie of ours)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[StartSupervisor]:
    """
    Start ``[PREFIX...] twistd -n TWISTD_OPTIONS... wskeepalive --listen
    LISTEN --workers N OPTIONS...`` and wait until its N workers listen;
    ``listen`` defaults to a free loopback TCP port; ``import_from`` is a
    folder of an operator's modules, put on ``PYTHONPATH``; ``own_group``
    starts it in a process group of its own.  ``server.port``
    is the port the workers share (the one the kernel chose, for ``tcp:0``).
    Supervisors still running at the end get SIGTERM and must exit 0.
    """
    servers: list[Server] = []

    def start(
        *options: str,
        workers: int = 2,
        twistd_options: Sequence[str] = (),
        listen: str | None = None,
        prefix: Sequence[str] = (),
        host: str = "127.0.0.1",
        import_from: Path | None = None,
        own_group: bool = False,
    ) -> Server:
        if listen is None:
            listen = f"tcp:{free_port()}:interface=127.0.0.1"
        number = len(servers) + 1
        output_path = tmp_path / f"supervisor-{number}.out"
        log_path = tmp_path / f"supervisor-{number}.json"
        log_path.touch()
        argv = [
            *prefix,
            str(TWISTD),
            "-n",
            "--pidfile=",
            "--logger=tests.interop.twistd_side.log_observer",
            *twistd_options,
            "wskeepalive",
            "--listen",
            listen,
            "--workers",
            str(workers),
            *options,
        ]
        env = subprocess_env(**{LOG_PATH_VARIABLE: str(log_path)})
        if import_from is not None:
            env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(import_from)])
        with output_path.open("wb") as output:
            process = subprocess.Popen(
                argv,
                cwd=tmp_path,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                # A process group of its own, for a test to signal it whole
                # as a terminal's Ctrl-C or systemd's default KillMode does.
                start_new_session=own_group,
            )
        server = Server(process, "", output_path, log_path)
        servers.append(server)
        deadline = time.monotonic() + START_TIMEOUT
        while len({e["worker"] for e in server.log(keepalive_event="worker_listening")}) < workers:
            if process.poll() is not None:
                pytest.fail(
                    f"the supervisor exited before the workers listened:\n{server.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"the workers did not all listen in time:\n{server.output()}")
            time.sleep(0.05)
        [started] = server.log(keepalive_event="workers_start")
        server.port = started["ports"][0]
        bracketed = f"[{host}]" if ":" in host else host
        server.url = f"ws://{bracketed}:{server.port}/"
        return server

    yield start

    failures = []
    for server in servers:
        if server.process.poll() is None:
            status = server.stop(timeout=30.0)
            if status != 0:
                failures.append(f"twistd exited {status} after SIGTERM:\n{server.output()}")
    assert not failures, "\n".join(failures)


def signal_parent(server: Server, signum: int = signal.SIGHUP) -> None:
    """Send ``signum`` to the supervisor (the twistd process)."""
    os.kill(server.process.pid, signum)


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block, then SIGCONT it if it still exists."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def events_between(server: Server, first: str, last: str, **fields: Any) -> list[Event]:
    """The events with ``fields`` logged after the first ``first`` event and before ``last``."""
    events = server.log()
    names = [e.get("keepalive_event") for e in events]
    begin = names.index(first)
    end = names.index(last, begin)
    return [e for e in events[begin:end] if all(e.get(k) == v for k, v in fields.items())]


def unresponsive_client(port: int, host: str = "127.0.0.1") -> socket.socket:
    """
    A WebSocket client that completes the opening handshake and then never
    reads or answers again: the server's closing handshake with it lasts
    the whole close timeout.
    """
    sock = socket.create_connection((host, port), timeout=10)
    handshake(sock, host, "/")
    return sock


def usage_error(tmp_path: Path, *options: str) -> str:
    """What ``twistd wskeepalive OPTIONS`` printed, having refused them as it should."""
    result = run_twistd("-n", "--pidfile=", "wskeepalive", *options, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stdout
    return result.stdout


def worker_of(server: Server, client_port: int) -> int | None:
    """The pid of the worker whose log says it opened the connection from ``client_port``."""
    for event in server.log(keepalive_event="open"):
        if str(event.get("peer", "")).endswith(f":{client_port}"):
            return int(event["worker_pid"])
    return None


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """The samples at ``http://127.0.0.1:PORT/metrics``: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as got:
        assert got.status == 200
        body = got.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def per_worker(samples: Samples, name: str) -> dict[str, float]:
    """The values of ``name`` by ``worker`` label, for series labelled by worker only."""
    return {
        dict(labels)["worker"]: value
        for (sample, labels), value in samples.items()
        if sample == name and [k for k, _ in labels] == ["worker"]
    }
