"""
What the fault tests share: child processes that print JSON lines (our
keepalive server, the peers), network namespaces joined by veth pairs, and a
look at a process's TCP sockets through ``/proc``.

These tests run no reactor in the test process unless they are trial
TestCases; subprocesses are read by a thread each, and a test waits for their
events with a timeout.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO / "tests" / "peers"
NODE = shutil.which("node")
IP = shutil.which("ip")
NODE_PEERS_READY = NODE is not None and (PEERS / "node_modules" / "ws").is_dir()

#: Long variants run only with ``KEEPALIVE_SLOW=1`` in the environment.
SLOW = os.environ.get("KEEPALIVE_SLOW", "") not in ("", "0")
slow = pytest.mark.slow
only_slow = pytest.mark.skipif(not SLOW, reason="slow variant: set KEEPALIVE_SLOW=1")

Event = dict[str, Any]

#: Seconds to wait for an event that should come promptly.
PROMPT = 15.0


def needs_node() -> None:
    if not NODE_PEERS_READY:
        pytest.skip("Node.js or tests/peers/node_modules/ws is missing: `npm ci` in tests/peers")


def needs_netns() -> None:
    if IP is None or os.geteuid() != 0:
        pytest.skip("network namespaces need root and iproute2's `ip`")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    """A child process printing one JSON object per line, with stdin open for commands."""

    name: str
    process: subprocess.Popen[str]
    stderr: IO[bytes]
    events: list[Event] = field(default_factory=list)
    _lines: queue.Queue[Event | None] = field(default_factory=queue.Queue)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.strip()
            if line.startswith("{"):
                event = json.loads(line)
                with self._lock:
                    self.events.append(event)
                self._lines.put(event)
        self._lines.put(None)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def of(self, name: str, **fields: Any) -> list[Event]:
        """Events named ``name`` with these fields, printed so far."""
        return [e for e in self.snapshot() if _matches(e, name, fields)]

    def wait_for(self, name: str, timeout: float = PROMPT, **fields: Any) -> Event:
        """The first event named ``name`` with these fields, printed or to come."""
        for event in self.snapshot():
            if _matches(event, name, fields):
                return event
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{self.name}: no {name!r} {fields} in {timeout} s\n{self.describe()}")
            if event is None:
                self._lines.put(None)
                for late in self.snapshot():
                    if _matches(late, name, fields):
                        return late
                pytest.fail(f"{self.name} exited before {name!r} {fields}\n{self.describe()}")
            if _matches(event, name, fields):
                return event

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stats(self) -> Event:
        """Ask our keepalive server for its counters (after a gc.collect())."""
        count = len(self.of("stats"))
        self.command("stats")
        deadline = time.monotonic() + PROMPT
        while len(self.of("stats")) <= count:
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: no stats\n{self.describe()}")
            time.sleep(0.02)
        return self.of("stats")[count]

    def describe(self) -> str:
        self.stderr.flush()
        with suppress(OSError):
            tail = Path(self.stderr.name).read_text(errors="replace")[-3000:]
            return f"events: {self.snapshot()[-20:]}\nstderr: {tail}"
        return f"events: {self.snapshot()[-20:]}"

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (waking a frozen process first), then SIGKILL; reap it."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        self.stderr.close()


def _matches(event: Event, name: str, fields: dict[str, Any]) -> bool:
    return event.get("event") == name and all(event.get(k) == v for k, v in fields.items())


class Procs:
    """Starts children and stops every one of them at the end of a test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Proc] = []

    def start(self, name: str, argv: list[str], netns: str | None = None) -> Proc:
        if netns is not None:
            assert IP is not None
            argv = [IP, "netns", "exec", netns, *argv]
        stderr = (self.tmp / f"{len(self.started) + 1}-{name}.err").open("wb")
        process = subprocess.Popen(
            argv,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        proc = Proc(name, process, stderr)
        self.started.append(proc)
        return proc

    def server(self, *options: str, netns: str | None = None, framing: str = "autobahn") -> Proc:
        """
        Our keepalive echo server (tests/peers/keepalive_server.py), listening,
        on ``framing``: ``autobahn`` or ``twisted`` (twisted.web.websocket).
        """
        argv = [
            sys.executable, "-u", str(PEERS / "keepalive_server.py"), "--framing", framing,
            *options,
        ]  # fmt: skip
        proc = self.start("keepalive_server", argv, netns)
        proc.wait_for("listening")
        return proc

    def python_peer(self, script: str, *args: str, netns: str | None = None) -> Proc:
        argv = [sys.executable, "-u", str(PEERS / f"{script}.py"), *args]
        return self.start(script, argv, netns)

    def node_peer(self, script: str, *args: str, netns: str | None = None) -> Proc:
        needs_node()
        assert NODE is not None
        return self.start(script, [NODE, str(PEERS / script), *args], netns)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


def server_options(
    interval: float, timeout: float, close_timeout: float, *extra: str
) -> tuple[str, ...]:
    """Command-line settings for keepalive_server.py; first ping exactly one interval in."""
    return (
        "--ping-interval", str(interval), "--ping-timeout", str(timeout),
        "--close-timeout", str(close_timeout), "--first-ping-spread", "0", *extra,
    )  # fmt: skip


# -- network namespaces -------------------------------------------------------

NETNS_PREFIX = "tka-"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    return subprocess.run([IP, *args], check=check, capture_output=True, text=True)


def sweep_stale_namespaces() -> None:
    """Delete namespaces that an earlier, killed test run left behind (its pid is gone)."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listed:
        name = line.split(" ")[0]
        if not name.startswith(NETNS_PREFIX):
            continue
        try:
            pid = int(name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            _ip("netns", "del", name, check=False)


class Lab:
    """
    Network namespaces joined by veth pairs, with link-local addresses only
    (169.254.0.0/16): nothing here can reach or disturb any real network.
    Names are unique per test run (``tka-<pid>-<token>-<role>``).
    """

    def __init__(self) -> None:
        self.token = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.links = 0

    def namespace(self, role: str) -> str:
        name = f"{NETNS_PREFIX}{os.getpid()}-{self.token}-{role}"
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, left: str, right: str, subnet: int) -> tuple[str, str, str, str]:
        """
        A veth pair from ``left`` to ``right`` on 169.254.SUBNET.0/24:
        ``left`` gets .1, ``right`` gets .2.  Returns (left interface, left
        address, right interface, right address).
        """
        assert 0 < subnet < 255
        self.links += 1
        # Interface names are at most 15 characters.
        a, b = f"k{self.token}{self.links}a", f"k{self.token}{self.links}b"
        _ip("link", "add", a, "netns", left, "type", "veth", "peer", "name", b, "netns", right)
        left_addr, right_addr = f"169.254.{subnet}.1", f"169.254.{subnet}.2"
        for ns, dev, addr in ((left, a, left_addr), (right, b, right_addr)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        return a, left_addr, b, right_addr

    def set_link(self, namespace: str, interface: str, up: bool) -> None:
        _ip("-n", namespace, "link", "set", interface, "up" if up else "down")

    def close(self) -> None:
        for name in reversed(self.namespaces):
            _ip("netns", "del", name, check=False)
        self.namespaces.clear()


@contextmanager
def lab() -> Iterator[Lab]:
    needs_netns()
    sweep_stale_namespaces()
    made = Lab()
    try:
        yield made
    finally:
        made.close()


# -- /proc ----------------------------------------------------------------------

TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
}  # fmt: skip


@dataclass(frozen=True)
class TcpSocket:
    """One TCP socket a process holds an fd for."""

    local: tuple[str, int]
    remote: tuple[str, int]
    state: str
    send_queue: int
    fd: int


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    packed = struct.pack("<I", int(host, 16))
    return socket.inet_ntoa(packed), int(port, 16)


def tcp_sockets(pid: int) -> list[TcpSocket]:
    """
    The IPv4 TCP sockets ``pid`` holds file descriptors for, from
    ``/proc/PID/fd`` and ``/proc/PID/net/tcp`` (which shows the network
    namespace that process lives in).
    """
    inodes: dict[int, int] = {}
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            target = os.readlink(entry)
            if target.startswith("socket:["):
                inodes[int(target[8:-1])] = int(entry.name)
    found = []
    lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    for line in lines:
        cols = line.split()
        inode = int(cols[9])
        if inode in inodes:
            tx_queue = int(cols[4].split(":")[0], 16)
            found.append(
                TcpSocket(
                    _address(cols[1]), _address(cols[2]), TCP_STATES.get(int(cols[3], 16), "?"),
                    tx_queue, inodes[inode],
                )
            )  # fmt: skip
    return found


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` now, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for {pid}")


def gaps(times: Iterable[float]) -> list[float]:
    ordered = sorted(times)
    return [b - a for a, b in itertools.pairwise(ordered)]


def record(scenario: str, **figures: Any) -> None:
    """
    Print the figures a test measured, and append them as a JSON line to the
    file named by ``KEEPALIVE_FAULTS_REPORT`` if set (docs/reliability.md's table
    is made from them).
    """
    line = json.dumps({"scenario": scenario, **figures}, default=str)
    print("measured:", line)
    path = os.environ.get("KEEPALIVE_FAULTS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as report:
            report.write(line + "\n")


def summary(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"n={len(values)} min={min(values):.3f} median={statistics.median(values):.3f} "
        f"max={max(values):.3f}"
    )
