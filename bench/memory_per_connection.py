"""
Bytes the library allocates per connection, in process: plain Autobahn
against ``KeepaliveMixin`` on the same factory, and plain
``twisted.web.websocket`` against ``with_keepalive`` on the same ``Site``,
counted with ``tracemalloc`` (the allocations themselves, free of the RSS
noise of a shared machine).

N server protocols complete the opening handshake over ``StringTransport``s
on one factory and one ``task.Clock``; the snapshot difference, divided by N,
is a connection's cost.  The top allocation sites of ours are listed too.

    python bench/memory_per_connection.py                 # 2,000 connections
    python bench/memory_per_connection.py --connections 50   # smoke
"""

from __future__ import annotations

import argparse
import base64
import gc
import linecache
import os
import sys
import tracemalloc
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from _report import environment, format_table, write_json  # noqa: E402
from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from twisted_keepalive import KeepaliveMixin  # noqa: E402


class Plain(WebSocketServerProtocol):
    pass


class Ours(KeepaliveMixin, WebSocketServerProtocol):
    pass


class OursOneSlot(Ours):
    """Every first Ping in one timer slot: the connection's own cost, no share of a slot's timer."""

    first_ping_spread = 0.0


def upgrade_request() -> bytes:
    """A client's opening handshake, with a fresh key."""
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )


def handshake(factory: Any, clock: Clock) -> Any:
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.clock = clock
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(upgrade_request())
    transport.clear()
    return protocol


class WebApp:
    """A plain twisted.web.websocket protocol that does nothing."""

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        pass

    def bytesMessageReceived(self, data: bytes) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass


class WebApps:
    def buildProtocol(self, addr: Any) -> WebApp:
        return WebApp()


def web_site(keepalive: bool, clock: Clock) -> Any:
    from twisted.web.server import Site
    from twisted.web.websocket import WebSocketResource

    from twisted_keepalive.web import with_keepalive

    factory: Any = with_keepalive(WebApps(), clock=clock) if keepalive else WebApps()
    resource = WebSocketResource(factory)
    resource.isLeaf = True
    return Site(resource, timeout=None)


def web_handshake(site: Any, clock: Clock) -> Any:
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    channel.makeConnection(transport)
    channel.dataReceived(upgrade_request())
    assert transport.value().startswith(b"HTTP/1.1 101"), transport.value()[:80]
    transport.clear()
    return channel


def measure(variant: Any, connections: int) -> tuple[float, list[tuple[float, str]]]:
    clock = Clock()
    if variant in ("web", "web-ours"):
        site = web_site(variant == "web-ours", clock)

        def connect() -> Any:
            return web_handshake(site, clock)

    else:
        factory = WebSocketServerFactory("ws://127.0.0.1:9000")
        factory.protocol = variant
        factory.setProtocolOptions(openHandshakeTimeout=0)

        def connect() -> Any:
            return handshake(factory, clock)

    connect()  # the first connection builds the shared parts
    held = []
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(connections):
        held.append(connect())
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    diff = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in diff) / connections
    ours = []
    for stat in diff:
        frame = stat.traceback[0]
        if "twisted_keepalive" in frame.filename and stat.size_diff > 0:
            where = frame.filename.split("twisted_keepalive/")[-1]
            line = linecache.getline(frame.filename, frame.lineno).strip()
            ours.append((stat.size_diff / connections, f"{where}:{frame.lineno} {line[:60]}"))
    return total, sorted(ours, reverse=True)[:8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--out", default=str(BENCH / "results" / "memory_per_connection.json"))
    args = parser.parse_args()
    plain, _ = measure(Plain, args.connections)
    ours, sites = measure(Ours, args.connections)
    one_slot, _ = measure(OursOneSlot, args.connections)
    web, _ = measure("web", args.connections)
    web_ours, web_sites = measure("web-ours", args.connections)
    rows = [["variant", "B/conn", "KiB/conn", "over plain"]]
    rows.append(["plain Autobahn", f"{plain:.0f}", f"{plain / 1024:.2f}", "-"])
    rows.append(["KeepaliveMixin", f"{ours:.0f}", f"{ours / 1024:.2f}",
                 f"+{(ours - plain) / 1024:.2f} KiB"])  # fmt: skip
    rows.append(["  its own, without slot timers", f"{one_slot:.0f}", f"{one_slot / 1024:.2f}",
                 f"+{(one_slot - plain) / 1024:.2f} KiB"])  # fmt: skip
    rows.append(["plain twisted.web.websocket", f"{web:.0f}", f"{web / 1024:.2f}", "-"])
    rows.append(["with_keepalive", f"{web_ours:.0f}", f"{web_ours / 1024:.2f}",
                 f"+{(web_ours - web) / 1024:.2f} KiB"])  # fmt: skip
    print(f"{args.connections} handshaken connections on one factory (tracemalloc); first Pings "
          "spread over the 20 s interval: ~1 connection per 20 ms slot at 1,000, ~20 at 20,000, "
          "sharing that slot's timer")  # fmt: skip
    print("\n".join(format_table(rows)))
    for name, found in (("KeepaliveMixin", sites), ("with_keepalive", web_sites)):
        print(f"\n{name}, by allocation site (B/conn):")
        for size, where in found:
            print(f"  {size:7.1f}  {where}")
    write_json(
        args.out,
        {
            "benchmark": "memory_per_connection",
            "environment": environment(["twisted", "autobahn", "wsproto"]),
            "connections": args.connections,
            "plain_bytes_per_connection": plain,
            "ours_bytes_per_connection": ours,
            "ours_one_slot_bytes_per_connection": one_slot,
            "sites": [{"bytes": size, "where": where} for size, where in sites],
            "web_plain_bytes_per_connection": web,
            "web_ours_bytes_per_connection": web_ours,
            "web_sites": [{"bytes": size, "where": where} for size, where in web_sites],
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
