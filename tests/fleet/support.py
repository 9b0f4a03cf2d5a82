"""
The fleet's processes: backends (``twistd -n wskeepalive``), the balancer in
front of them (HAProxy or nginx, on the files of ``deploy/``) and the
clients, each in a process group of its own so that teardown kills
everything it started -- a ``--workers`` parent's workers and Chromium
included -- even when a test fails half-way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from tests.faults.support import Proc
from tests.interop.conftest import TWISTD, free_port, subprocess_env, wait_until_accepting
from tests.interop.twistd_side import LOG_PATH_VARIABLE

from . import configs

Event = dict[str, Any]


class LineWatcher:
    """The lines of a text stream, each with the time.monotonic() it was read at."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

    def matching(self, pattern: str) -> list[tuple[float, str]]:
        with self._lock:
            return [(at, line) for at, line in self.lines if re.search(pattern, line)]

    def wait_for(self, pattern: str, timeout: float) -> float:
        """When the first line matching ``pattern`` was read."""
        deadline = time.monotonic() + timeout
        while not (found := self.matching(pattern)):
            if time.monotonic() > deadline:
                with self._lock:
                    tail = "\n".join(line for _, line in self.lines[-20:])
                pytest.fail(f"no line matching {pattern!r} in {timeout} s:\n{tail}")
            time.sleep(0.02)
        return found[0][0]


class Group:
    """Children started in process groups of their own, all killed by :meth:`kill_all`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.processes: list[subprocess.Popen[Any]] = []

    def popen(self, argv: list[str], **options: Any) -> subprocess.Popen[Any]:
        process: subprocess.Popen[Any] = subprocess.Popen(argv, start_new_session=True, **options)
        self.processes.append(process)
        return process

    def json_lines(self, name: str, argv: list[str]) -> Proc:
        """A child printing one JSON object a line (the peers), stdin open for commands."""
        stderr = (self.tmp / f"{len(self.processes) + 1}-{name}.err").open("wb")
        process = self.popen(
            argv, env=subprocess_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr, text=True,
        )  # fmt: skip
        return Proc(name, process, stderr)

    def kill_all(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGCONT)  # a frozen one, too
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Backend:
    """One ``twistd -n wskeepalive`` of the fleet (a ``--workers`` parent, perhaps)."""

    name: str
    port: int
    metrics_port: int
    process: subprocess.Popen[bytes]
    output_path: Path
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> float:
        """Send ``signum`` to the twistd process; when, on time.monotonic()."""
        # Read the clock first: after the signal, this thread may wait for the
        # GIL behind the readers of the clients' events, and the effects of the
        # signal would seem to come before it.
        sent = time.monotonic()
        self.process.send_signal(signum)
        return sent

    def log(self, **fields: Any) -> list[Event]:
        """Its log events with these field values (twistd's JSON log)."""
        events = []
        for text in self.log_path.read_text(errors="replace").split("\x1e"):
            if text.strip():
                with suppress(json.JSONDecodeError):
                    events.append(json.loads(text))
        return [e for e in events if all(e.get(k) == v for k, v in fields.items())]

    def connections_open(self) -> float:
        """``twisted_keepalive_connections_open``, summed over its workers, from /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        found = re.findall(r"^twisted_keepalive_connections_open(?:\{[^}]*\})? (\S+)$", text, re.M)
        return sum(float(value) for value in found)

    def describe(self) -> str:
        output = self.output_path.read_text(errors="replace")[-3000:]
        return f"{self.name} ({self.address}):\n{output}"


def start_backends(group: Group, options: list[list[str]]) -> list[Backend]:
    """
    One backend per list of options, all at once, each on a free loopback
    port with ``/metrics`` on another; returns once all accept connections.
    """
    backends = []
    for number, extra in enumerate(options, 1):
        port, metrics_port = free_port(), free_port()
        output_path = group.tmp / f"b{number}.out"
        log_path = group.tmp / f"b{number}.json"
        log_path.touch()
        with output_path.open("wb") as output:
            process = group.popen(
                [
                    str(TWISTD), "-n", "--pidfile=",
                    "--logger=tests.interop.twistd_side.log_observer",
                    "wskeepalive",
                    "--listen", f"tcp:{port}:interface=127.0.0.1",
                    "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1",
                    "--protocol", "tests.fleet.backend.IdentifiedEcho",
                    *extra,
                ],
                cwd=group.tmp, env=subprocess_env(**{LOG_PATH_VARIABLE: str(log_path)}),
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        backends.append(Backend(f"b{number}", port, metrics_port, process, output_path, log_path))
    for backend in backends:
        wait_until_accepting(("127.0.0.1", backend.port), backend.alive, backend.describe)
    return backends


@dataclass
class Balancer:
    """HAProxy or nginx in front of the backends, on the files in ``deploy/``."""

    kind: str
    port: int
    process: subprocess.Popen[str]
    lines: LineWatcher
    error_log: Path | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def marked_down(self, backend: Backend, timeout: float) -> float:
        """When HAProxy logged ``backend`` DOWN (the backends are b1, b2, b3 in both)."""
        assert self.kind == "haproxy", "nginx has no active health check to log"
        return self.lines.wait_for(rf"Server wskeepalive/{backend.name} is DOWN", timeout)

    def describe(self) -> str:
        text = "\n".join(line for _, line in self.lines.lines[-30:])
        if self.error_log is not None and self.error_log.exists():
            text += "\n" + self.error_log.read_text(errors="replace")[-3000:]
        return f"{self.kind}:\n{text}"


def start_balancer(group: Group, kind: str, backends: list[Backend]) -> Balancer:
    missing = configs.MISSING[kind]
    if missing:
        pytest.skip(missing)
    port = free_port()
    addresses = [backend.address for backend in backends]
    prefix = group.tmp / kind
    prefix.mkdir()
    error_log = None
    if kind == "haproxy":
        assert configs.HAPROXY is not None
        argv = [configs.HAPROXY, "-db", "-f", str(configs.HAPROXY_CFG)]
        env = configs.haproxy_environment(f"127.0.0.1:{port}", addresses)
    else:
        assert configs.NGINX is not None
        included = prefix / "wskeepalive.conf"
        included.write_text(configs.render_nginx(f"127.0.0.1:{port}", addresses))
        main = prefix / "nginx.conf"
        main.write_text(configs.nginx_main_config(prefix, included))
        error_log = prefix / "error.log"
        argv = [configs.NGINX, "-c", str(main), "-p", str(prefix), "-e", str(error_log),
                "-g", "daemon off;"]  # fmt: skip
        env = dict(os.environ)
    process = group.popen(
        argv, cwd=prefix, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    balancer = Balancer(kind, port, process, LineWatcher(process.stdout), error_log)
    wait_until_accepting(("127.0.0.1", port), lambda: process.poll() is None, balancer.describe)
    return balancer


@dataclass
class Fleet:
    """Three backends and a balancer in front of them."""

    backends: list[Backend]
    balancer: Balancer
    group: Group
    clients: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.balancer.url

    def by_port(self, port: int) -> Backend:
        return next(backend for backend in self.backends if backend.port == port)

    def describe(self) -> str:
        parts = [self.balancer.describe(), *(b.describe() for b in self.backends)]
        return "\n\n".join(parts)


def python_peer(group: Group, script: str, *args: str) -> Proc:
    """A Python peer from tests/peers, e.g. ``reconnecting_peer``."""
    peers = Path(__file__).resolve().parents[1] / "peers"
    return group.json_lines(script, [sys.executable, "-u", str(peers / f"{script}.py"), *args])
