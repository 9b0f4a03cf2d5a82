"""
Fixtures that run ``twistd -n wskeepalive`` as an operator would, and the
third-party peers (``tests/peers/``) that talk to it, as child processes.

No reactor runs in the test process: the server and the peers are separate
programs, and the tests read what they printed (the peers' JSON lines, the
server's log as JSON through ``twistd --logger``).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import eventsFromJSONLogFile

from tests.realpeers import NODE, NODE_MISSING, NODE_PEERS_READY, PEERS

from .twistd_side import LOG_PATH_VARIABLE

REPO = Path(__file__).resolve().parents[2]

#: The twistd of the Python running the tests (the venv's, in CI).
TWISTD = Path(sysconfig.get_path("scripts")) / "twistd"

Event = dict[str, Any]

#: Seconds a server gets to start listening, or a peer to print an event.
STARTUP_TIMEOUT = 15.0


def subprocess_env(**extra: str) -> dict[str, str]:
    """
    The environment for twistd and the peers: the checkout first on
    ``PYTHONPATH``, because Twisted finds plugins by scanning ``sys.path`` for
    ``twisted/plugins`` directories, and an editable install (setuptools'
    import hook) puts none there.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def free_port() -> int:
    """A loopback TCP port nobody listens on (free when this returns)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_accepting(
    address: tuple[str, int] | str, alive: Callable[[], bool], why_dead: Callable[[], str]
) -> None:
    """Poll until ``address`` (host and port, or a unix socket path) accepts a connection."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        with socket.socket(family) as probe:
            try:
                probe.connect(address)
                return
            except OSError:
                pass
        if not alive():
            pytest.fail(f"the server exited before accepting connections:\n{why_dead()}")
        if time.monotonic() > deadline:
            pytest.fail(f"nothing accepted connections on {address} in time:\n{why_dead()}")
        time.sleep(0.05)


def run_twistd(
    *args: str, cwd: Path, timeout: float = 30.0, import_from: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """
    Run ``twistd ARGS`` to completion (help, refused options), output merged;
    ``import_from`` is a folder of an operator's modules, put on ``PYTHONPATH``
    after the checkout.
    """
    env = subprocess_env()
    if import_from is not None:
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(import_from)])
    return subprocess.run(
        [str(TWISTD), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Server:
    """A running ``twistd -n wskeepalive``."""

    process: subprocess.Popen[bytes]
    url: str
    output_path: Path
    log_path: Path
    port: int | None = None

    def output(self) -> str:
        """What twistd printed: its log as text, and anything on stderr."""
        return self.output_path.read_text(errors="replace")

    def log(self, **fields: Any) -> list[Event]:
        """The server's log events having these field values."""
        with self.log_path.open(encoding="utf-8") as events:
            return [
                event
                for event in eventsFromJSONLogFile(events)
                if all(event.get(k) == v for k, v in fields.items())
            ]

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as an init system would; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"twistd did not exit {timeout} s after SIGTERM:\n{self.output()}")


StartServer = Callable[..., Server]


#: The framings ``twistd wskeepalive --framing`` serves on.
FRAMINGS = ("autobahn", "twisted")


@pytest.fixture(params=FRAMINGS)
def framing(request: pytest.FixtureRequest) -> str:
    """
    Each framing in turn: a test that asks for this fixture runs on both,
    every server its ``twistd`` starts given ``--framing`` (the behaviour an
    operator relies on must not depend on the framing).
    """
    chosen: str = request.param
    return chosen


@pytest.fixture
def twistd(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StartServer]:
    """
    Start ``twistd -n wskeepalive --listen ... OPTIONS`` and wait until it
    accepts connections; ``listen`` defaults to a free loopback TCP port.
    In a test that uses the :func:`framing` fixture, ``--framing`` comes
    first among the options.  Servers still running at the end get SIGTERM
    and must exit 0.
    """
    servers: list[Server] = []
    chosen = (
        ["--framing", request.getfixturevalue("framing")]
        if "framing" in request.fixturenames
        else []
    )

    def start(*options: str, listen: str | None = None) -> Server:
        port = None
        if listen is None:
            port = free_port()
            listen = f"tcp:{port}:interface=127.0.0.1"
        elif listen.startswith(("tcp:", "ssl:")):
            port = int(listen.split(":")[1])
        scheme = "wss" if listen.startswith("ssl:") else "ws"
        number = len(servers) + 1
        output_path = tmp_path / f"twistd-{number}.out"
        log_path = tmp_path / f"twistd-{number}.json"
        log_path.touch()
        with output_path.open("wb") as output:
            process = subprocess.Popen(
                [
                    str(TWISTD),
                    "-n",
                    "--pidfile=",
                    "--logger=tests.interop.twistd_side.log_observer",
                    "wskeepalive",
                    "--listen",
                    listen,
                    *chosen,
                    *options,
                ],
                cwd=tmp_path,
                env=subprocess_env(**{LOG_PATH_VARIABLE: str(log_path)}),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = Server(
            process,
            f"{scheme}://127.0.0.1:{port}/" if port is not None else "ws://localhost/",
            output_path,
            log_path,
            port,
        )
        servers.append(server)
        address: tuple[str, int] | str = (
            ("127.0.0.1", port) if port is not None else listen.split(":")[1]
        )
        wait_until_accepting(address, lambda: process.poll() is None, server.output)
        return server

    yield start

    failures = []
    for server in servers:
        if server.process.poll() is None:
            status = server.stop()
            if status != 0:
                failures.append(f"twistd exited {status} after SIGTERM:\n{server.output()}")
    assert not failures, "\n".join(failures)


@dataclass
class Peer:
    """A peer process from ``tests/peers/`` and the JSON events it printed."""

    process: subprocess.Popen[str]
    stderr_path: Path
    events: list[Event] = field(default_factory=list)
    _lines: queue.Queue[Event | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self._lines.put(json.loads(line))
        self._lines.put(None)

    def wait_for(
        self,
        event: str,
        timeout: float = STARTUP_TIMEOUT,
        *,
        since: float | None = None,
        **fields: Any,
    ) -> Event:
        """
        The first event named ``event`` with these fields, printed or to come;
        with ``since``, the first whose ``t`` (monotonic seconds) is not earlier.
        """

        def matches(candidate: Event) -> bool:
            return (
                candidate.get("event") == event
                and all(candidate.get(k) == v for k, v in fields.items())
                and (since is None or candidate.get("t", since) >= since)
            )

        for earlier in self.events:
            if matches(earlier):
                return earlier
        deadline = time.monotonic() + timeout
        while True:
            try:
                printed = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {event!r} event from the peer in {timeout} s: {self.events}")
            if printed is None:
                self._lines.put(None)  # for the next wait_for
                pytest.fail(
                    f"the peer exited before a {event!r} event: {self.events}\n"
                    f"{self.stderr_path.read_text(errors='replace')}"
                )
            self.events.append(printed)
            if matches(printed):
                return printed

    def of(self, event: str) -> list[Event]:
        """The events named ``event`` printed so far (read by :meth:`wait_for`)."""
        return [candidate for candidate in self.events if candidate.get("event") == event]


StartPeer = Callable[..., Peer]


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[StartPeer]:
    """
    Start a peer: ``peers("websockets", "client", URL, ...)``,
    ``peers("reconnecting", URL, ...)`` (our ReconnectingClient) or
    ``peers("ws", ...)`` (Node, skipped when Node or ``ws`` is missing), with
    extra environment variables as keywords.  Killed at the end.
    """
    started: list[Peer] = []

    def start(kind: str, *args: str, **env: str) -> Peer:
        if kind == "websockets":
            argv = [sys.executable, "-u", str(PEERS / "websockets_peer.py"), *args]
        elif kind == "reconnecting":
            argv = [sys.executable, "-u", str(PEERS / "reconnecting_peer.py"), *args]
        elif kind == "ws":
            if not NODE_PEERS_READY:
                pytest.skip(NODE_MISSING)
            assert NODE is not None
            argv = [NODE, str(PEERS / "ws_peer.mjs"), *args]
        else:
            raise ValueError(f"unknown peer {kind!r}")
        stderr_path = tmp_path / f"peer-{len(started) + 1}.err"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                argv,
                env=subprocess_env(**env),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        peer = Peer(process, stderr_path)
        started.append(peer)
        return peer

    yield start

    for peer in started:
        if peer.process.poll() is None:
            peer.process.kill()
        peer.process.wait()
        assert peer.process.stdout is not None
        peer.process.stdout.close()


@pytest.fixture(params=["websockets", "ws"])
def peer_kind(request: pytest.FixtureRequest) -> str:
    """Each third-party peer in turn: Python's ``websockets``, Node's ``ws``."""
    kind: str = request.param
    if kind == "ws" and not NODE_PEERS_READY:
        pytest.skip(NODE_MISSING)
    return kind
