"""
Soak: many connections pinged every 0.2 s for a while, then closed.  Zero
false timeouts, every keepalive timer gone, every ``ping()`` Deferred
settled, every protocol object collected, and the server's memory back
where it started.

Two variants: our server as a subprocess (its RSS is measured, its counters
read through its ``stats`` command), and our server in this process under
trial (``reactor.getDelayedCalls()`` compared with its baseline).  CI runs
the short ones; ``KEEPALIVE_SLOW=1`` runs 1,000 connections for a minute.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial import unittest

from tests.realpeers import PeerProcess, sleep
from twisted_keepalive import KeepaliveMixin, collect_stats, set_keepalive_options
from twisted_keepalive.autobahn.factory import factory_record
from twisted_keepalive.autobahn.link import Link
from twisted_keepalive.core.wheel import TimerWheel

from .support import (
    NODE,
    NODE_PEERS_READY,
    PEERS,
    Event,
    Proc,
    Procs,
    needs_node,
    only_slow,
    record,
    server_options,
    slow,
)

INTERVAL, TIMEOUT, CLOSE_TIMEOUT = 0.2, 0.5, 1.0
#: How far the server's RSS may end above where it started, as a fraction.
RSS_TOLERANCE = 0.05
# The mixin's own DelayedCalls, and the slots of the TimerWheel that serves
# every connection's keepalive deadline on a real reactor.
#: The timers a connection's keepalive may leave behind if it leaks.
KEEPALIVE_TIMER_OWNERS = (Link, TimerWheel)


def wave(procs: Procs, server: Proc, url: str, connections: int, duration: float) -> Event:
    """``connections`` ws clients for ``duration`` seconds; their summary once all closed."""
    clients = procs.node_peer(
        "ws_peer.mjs", "many", url, "--count", str(connections), "--duration", str(duration),
    )  # fmt: skip
    done = clients.wait_for("summary", timeout=duration + 30)
    # The server's side of the last closing handshakes.
    deadline = time.monotonic() + 10
    while server.stats()["open"] and time.monotonic() < deadline:
        time.sleep(0.2)
    return done


def soak_subprocess(
    procs: Procs, connections: int, duration: float, framing: str = "autobahn"
) -> None:
    needs_node()
    server = procs.server(
        *server_options(INTERVAL, TIMEOUT, CLOSE_TIMEOUT, "--app-ping-every", "0.5", "--quiet"),
        framing=framing,
    )
    port = server.wait_for("listening")["port"]
    url = f"ws://127.0.0.1:{port}/"
    # A short first wave of as many connections loads what every connection
    # shares and raises the allocators' high-water marks (pymalloc arenas,
    # glibc's heap, Python's free lists) once; docs/reliability.md has that
    # first wave's figure.  Then the soak; then one more short wave, which
    # must leave nothing behind that the soak did not: a leak per connection
    # or per ping would grow with every wave.
    wave(procs, server, url, connections, 2.0)
    before = server.stats()
    done = wave(procs, server, url, connections, duration)
    after = server.stats()
    wave(procs, server, url, connections, 2.0)
    again = server.stats()
    growth = (after["rss_kib"] - before["rss_kib"]) / before["rss_kib"]
    # Keepalive Pings every INTERVAL plus ping() every 0.5 s, per connection.
    expected_pings = connections * duration * (1 / INTERVAL + 1 / 0.5)
    record(
        f"soak (subprocess server, {framing})",
        connections=connections,
        duration=duration,
        interval=INTERVAL,
        pings_received_by_clients=done["pings"],
        pings_expected_about=int(expected_pings),
        timeouts=again["timeouts"],
        close_codes=done["close_codes"],
        app_pings=again["app_pings"],
        keepalive_calls=after["keepalive_calls"],
        delayed_calls=after["delayed_calls"],
        protocols_alive=after["protocols"],
        rss_kib=[before["rss_kib"], after["rss_kib"], again["rss_kib"]],
        rss_growth_pct=round(100 * growth, 2),
        blocks=[before["blocks"], after["blocks"], again["blocks"]],
    )
    assert done["opened"] == connections and done["errors"] == 0
    assert done["close_codes"] == {"1000": connections}
    assert sum(again["timeouts"].values()) == 0, again["timeouts"]
    # The first keepalive Ping of each connection comes at a random point of
    # its first interval, so a little under the full count.
    assert done["pings"] > 0.8 * expected_pings, (done["pings"], expected_pings)
    assert after["opened"] == after["closed"] == before["closed"] + connections
    assert after["keepalive_calls"] == 0
    assert after["delayed_calls"] == before["delayed_calls"]
    assert again["app_pings"]["pending"] == 0, again["app_pings"]
    assert after["app_pings"]["issued"] > connections
    assert after["protocols"] == 0
    assert growth < RSS_TOLERANCE, (before["rss_kib"], after["rss_kib"])
    # The wave after the soak: no more Python memory blocks, no more RSS.
    assert again["blocks"] - after["blocks"] < 0.002 * after["blocks"], again["blocks"]
    assert again["rss_kib"] <= after["rss_kib"] * 1.01


def test_soak_200_connections_for_10_seconds(procs: Procs, framing: str) -> None:
    soak_subprocess(procs, connections=200, duration=10.0, framing=framing)


@slow
@only_slow
def test_soak_1000_connections_for_a_minute(procs: Procs) -> None:
    soak_subprocess(procs, connections=1000, duration=60.0)


class Soaked(KeepaliveMixin, WebSocketServerProtocol):
    """An echo server whose connections also ``ping()`` every half second."""

    pending: set[Deferred[float]]
    settled: list[str]
    _pinger: task.LoopingCall | None = None

    def onOpen(self) -> None:
        self._pinger = task.LoopingCall(self._ping)
        self._pinger.start(0.5, now=False)

    def _ping(self) -> None:
        waiter = self.ping()
        self.pending.add(waiter)

        def settle(result: Any) -> None:
            self.pending.discard(waiter)
            self.settled.append("fired" if isinstance(result, float) else "failed")

        waiter.addBoth(settle)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()


def delayed_calls() -> list[Any]:
    """The reactor's pending calls, less trial's own test timeout."""
    return [
        call
        for call in reactor.getDelayedCalls()  # type: ignore[attr-defined]
        if getattr(call.func, "__name__", "") != "onTimeout"
    ]


def keepalive_calls() -> list[Any]:
    return [
        call
        for call in reactor.getDelayedCalls()  # type: ignore[attr-defined]
        if isinstance(getattr(call.func, "__self__", None), KEEPALIVE_TIMER_OWNERS)
    ]


class InProcessSoakTests(unittest.TestCase):
    timeout = 120
    stats: list[Any]

    @inlineCallbacks
    def soak(self, connections: int, duration: float) -> Any:
        if NODE is None or not NODE_PEERS_READY:
            raise unittest.SkipTest("Node.js and tests/peers/node_modules/ws are needed")
        pending: set[Deferred[float]] = set()
        settled: list[str] = []
        factory = WebSocketServerFactory("ws://127.0.0.1")
        factory.protocol = type("Soaked", (Soaked,), {"pending": pending, "settled": settled})
        set_keepalive_options(
            factory, ping_interval=INTERVAL, ping_timeout=TIMEOUT, close_timeout=CLOSE_TIMEOUT
        )
        stats = collect_stats(factory)
        self.stats = [stats]
        baseline = len(delayed_calls())
        port = reactor.listenTCP(0, factory, backlog=4096, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        clients = PeerProcess()
        assert NODE is not None
        argv = [
            NODE, str(PEERS / "ws_peer.mjs"), "many", f"ws://127.0.0.1:{port.getHost().port}/",
            "--count", str(connections), "--duration", str(duration),
        ]  # fmt: skip
        reactor.spawnProcess(clients, NODE, argv)  # type: ignore[attr-defined]
        self.addCleanup(clients.stop)
        peak_waiting = 0
        while not clients.ended.called:
            peak_waiting = max(peak_waiting, factory_record(factory).waiting())
            yield sleep(0.25)
        [done] = clients.of("summary")
        deadline = time.monotonic() + 10
        while stats.open and time.monotonic() < deadline:
            yield sleep(0.1)
        record(
            "soak (in-process server)",
            connections=connections,
            duration=duration,
            peak_connections_on_the_wheel=peak_waiting,
            keepalive_calls_after=len(keepalive_calls()),
            delayed_calls=[baseline, len(delayed_calls())],
            pings_sent=stats.pings_sent,
            pongs=stats.pongs_received,
            timeouts={cause.value: n for cause, n in stats.timeouts.items()},
            ping_deferreds={
                "fired": settled.count("fired"),
                "failed": settled.count("failed"),
                "pending": len(pending),
            },
        )
        self.assertEqual(done["close_codes"], {"1000": connections})
        self.assertEqual((stats.opened, stats.closed), (connections, connections))
        self.assertEqual(sum(stats.timeouts.values()), 0)
        # Every open connection waited on the wheel for its next deadline.
        self.assertLessEqual(peak_waiting, connections)
        self.assertGreater(peak_waiting, connections * 0.9)
        self.assertEqual(factory_record(factory).waiting(), 0)
        self.assertEqual(keepalive_calls(), [])
        self.assertEqual(len(delayed_calls()), baseline, delayed_calls())
        self.assertEqual(pending, set())
        self.assertGreater(settled.count("fired"), connections * (duration / 0.5 - 2))

    def test_soak_100_connections_in_process(self) -> Any:
        return self.soak(100, 4.0)

    @pytest.mark.slow
    @only_slow
    def test_soak_1000_connections_in_process_for_a_minute(self) -> Any:
        return self.soak(1000, 60.0)

    @inlineCallbacks
    def test_stats_count_every_ping_whose_pong_they_count(self) -> Any:
        yield self.soak(5, 1.5)
        [stats] = self.stats
        self.assertLessEqual(stats.pongs_received, stats.pings_sent)
