"""
The fleet's clients and what they saw: keepalive.js in Node (``ws``) and in
headless Chromium (tests/peers/fleet_clients.mjs), the Python reconnecting
client (tests/peers/reconnecting_peer.py), all printing the same events; and
a prober that opens a fresh connection every 100 ms to see where the
balancer sends new ones.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.faults.support import NODE, PEERS, Proc, needs_node

from . import FULL
from .support import Group, python_peer

Event = dict[str, Any]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))

#: keepalive.js settings of the fleet's clients (milliseconds): the heartbeat
#: of the backends' --ping-interval 1 --ping-timeout 1, a 2 s connect
#: timeout, and a short backoff so that reconnects follow the drain's spread.
CLIENT_OPTIONS = {
    "pingInterval": 1000,
    "pingTimeout": 1000,
    "connectTimeout": 2000,
    "reconnectDelay": 100,
    "reconnectDelayMax": 1000,
}


#: Browser and Python clients beside the Node ones in every scenario: fewer,
#: since a page holds only so many sockets and a Python client costs more.
IN_CHROMIUM = 6 if FULL else 3
IN_PYTHON = 30 if FULL else 9


def keepalive_js(group: Group, kind: str, url: str, count: int, **options: Any) -> Proc:
    """``count`` keepalive.js clients in Node (``kind`` ``ws``) or in Chromium."""
    needs_node()
    if kind == "chromium":
        if not CHROMIUM.exists():
            pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
        if not (PEERS / "node_modules" / "playwright-core").is_dir():
            pytest.skip("tests/peers/node_modules/playwright-core is missing: npm ci there")
    assert NODE is not None
    settings = json.dumps({**CLIENT_OPTIONS, **options})
    argv = [NODE, str(PEERS / "fleet_clients.mjs"), kind, url, str(count), settings]
    return group.json_lines(f"{kind}-clients", argv)


def reconnecting_python(group: Group, url: str, count: int) -> Proc:
    """``count`` clients of ``ReconnectingClient`` (tests/peers/reconnecting_peer.py)."""
    seconds = {name: value / 1000 for name, value in CLIENT_OPTIONS.items()}
    return python_peer(
        group, "reconnecting_peer", url, "--clients", str(count),
        "--ping-interval", f"{seconds['pingInterval']:g}",
        "--ping-timeout", f"{seconds['pingTimeout']:g}",
        "--close-timeout", "1",
        "--handshake-timeout", f"{seconds['connectTimeout']:g}",
        "--initial-delay", f"{seconds['reconnectDelay']:g}",
        "--max-delay", f"{seconds['reconnectDelayMax']:g}",
    )  # fmt: skip


def _as_fleet_events(events: list[Event]) -> list[Event]:
    """
    reconnecting_peer.py's events in fleet_clients.mjs's format: an open is
    the backend's first message, a close says whether it had opened, and a
    TCP connection that failed (no protocol, so no close) is a failed attempt.
    """
    converted, open_now = [], set()
    for event in events:
        client, at = event.get("client"), event["t"]
        if event["event"] == "message":
            with suppress(ValueError, TypeError, KeyError):
                identity = json.loads(event["data"])
                converted.append(
                    {"event": "open", "client": client, "backend": identity["backend"],
                     "pid": identity["pid"], "mono": at}
                )  # fmt: skip
                open_now.add(client)
        elif event["event"] == "close":
            converted.append(
                {"event": "close", "client": client, "code": event["code"],
                 "reason": event["reason"], "opened": client in open_now, "mono": at}
            )  # fmt: skip
            open_now.discard(client)
        elif event["event"] == "reconnect" and event["why"].startswith("connecting failed"):
            converted.append(
                {"event": "close", "client": client, "code": None, "reason": event["why"],
                 "opened": False, "mono": at}
            )  # fmt: skip
    return converted


class Seen:
    """What a set of client processes reported, as one timeline."""

    def __init__(self, *held: tuple[Proc, int]) -> None:
        #: Each client process and how many clients it holds.
        self.held = list(held)
        self.procs = [proc for proc, _ in held]

    def events(self, name: str | None = None) -> list[Event]:
        """Every event (of this name), each tagged with its client ``who``, by time."""
        found = [
            {**event, "who": f"{proc.name}#{event.get('client')}"}
            for proc in self.procs
            for event in self._fleet_events(proc)
            if name is None or event.get("event") == name
        ]
        return sorted(found, key=lambda e: float(e["mono"]))

    @staticmethod
    def _fleet_events(proc: Proc) -> list[Event]:
        events = proc.snapshot()
        return _as_fleet_events(events) if proc.name == "reconnecting_peer" else events

    def where(self) -> dict[str, int | None]:
        """Each client's backend now (its port), or None while it is not open."""
        now: dict[str, int | None] = {}
        for event in self.events():
            if event["event"] == "open":
                now[event["who"]] = event["backend"]
            elif event["event"] == "close":
                now[event["who"]] = None
        return now

    def count(self) -> int:
        return sum(count for _, count in self.held)

    def wait_all_open(self, timeout: float, avoiding: int | None = None) -> float:
        """Until every client is open (and none on port ``avoiding``); when."""
        deadline = time.monotonic() + timeout
        while True:
            where = self.where()
            opened = [port for port in where.values() if port is not None and port != avoiding]
            if len(opened) == self.count():
                return time.monotonic()
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{len(opened)} of {self.count()} clients open in {timeout} s"
                    f"{f' away from {avoiding}' if avoiding else ''}: {where}\n" + self.describe()
                )
            time.sleep(0.05)

    def first(self, name: str, who: str, after: float) -> Event:
        """The first event ``name`` of client ``who`` after ``after``."""
        for event in self.events(name):
            if event["who"] == who and event["mono"] > after:
                return event
        pytest.fail(f"no {name!r} from {who} after {after}\n{self.describe()}")

    def failed_attempts(self) -> list[Event]:
        """Attempts that never opened: refused, failed handshakes, connect timeouts."""
        return [e for e in self.events("close") if not e["opened"]]

    def describe(self) -> str:
        return "\n".join(proc.describe() for proc in self.procs)


@dataclass
class Probe:
    """One fresh connection through the balancer: when it opened and where, or why not."""

    started: float
    opened: float | None
    backend: int | None
    pid: int | None
    error: str | None


@dataclass
class Prober:
    """
    Opens a new connection through the balancer every ``every`` seconds,
    reads which backend served it, and closes it: where the balancer sends new
    clients from one moment to the next.
    """

    url: str
    every: float = 0.1
    probes: list[Probe] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def _run(self) -> None:
        from websockets.sync.client import connect

        while not self._stop.wait(self.every):
            started = time.monotonic()
            try:
                with connect(self.url, open_timeout=3, close_timeout=1) as socket:
                    identity = json.loads(socket.recv(timeout=3))
                    opened = time.monotonic()
                backend, pid = identity["backend"], identity["pid"]
                self.probes.append(Probe(started, opened, backend, pid, None))
            except Exception as error:  # every failure is a finding
                self.probes.append(Probe(started, None, None, None, repr(error)))

    def failures(self) -> list[Probe]:
        return [probe for probe in self.probes if probe.error is not None]

    def opened_on(self, port: int, after: float) -> list[Probe]:
        return [p for p in self.probes if p.backend == port and p.opened and p.opened > after]


def populate(
    group: Group, url: str, node: int, chromium: int = IN_CHROMIUM, python: int = IN_PYTHON
) -> Seen:
    """
    Start ``node`` keepalive.js clients in Node, ``chromium`` in a page and
    ``python`` ReconnectingClients; once all are open.
    """
    held = [(keepalive_js(group, "ws", url, node), node)]
    if chromium:
        held.append((keepalive_js(group, "chromium", url, chromium), chromium))
    if python:
        held.append((reconnecting_python(group, url, python), python))
    seen = Seen(*held)
    seen.wait_all_open(60)
    return seen


def on_backend(seen: Seen, port: int) -> set[str]:
    """The clients open on the backend at ``port`` now."""
    return {who for who, at in seen.where().items() if at == port}
