"""
What ``twistd wskeepalive``'s ``twisted.web`` site costs per opening
handshake and per connection, against the same served class on Autobahn's
own HTTP parsing (how the server ran before the site).

Both paths run in process over ``StringTransport``s on one ``task.Clock``:
CPU as the best of several rounds of N handshakes (``time.process_time``),
memory as the ``tracemalloc`` difference per open connection.  Ratios are
what to read; absolute figures move with the machine.

    python bench/handshake_cost.py                    # 2,000 handshakes x 5 rounds
    python bench/handshake_cost.py --handshakes 50 --rounds 1   # smoke
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from _report import environment, format_table, write_json  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from twisted_keepalive.server.health import Ready  # noqa: E402
from twisted_keepalive.server.service import build_site, served_class  # noqa: E402
from twisted_keepalive.server.settings import Settings  # noqa: E402
from twisted_keepalive.server.site import TakeoverResource  # noqa: E402
from twisted_keepalive.server.tracking import ServerFactory  # noqa: E402

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


def request() -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )


def factory() -> ServerFactory:
    made = ServerFactory(None, Clock())
    made.protocol = served_class(Settings().protocol)
    return made


def through_autobahn(made: ServerFactory) -> Callable[[], Any]:
    def open_one() -> Any:
        protocol = made.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(request())
        assert transport.value().startswith(b"HTTP/1.1 101")
        return transport

    return open_one


def through_site(made: ServerFactory) -> Callable[[], Any]:
    site = build_site(
        TakeoverResource(made), Settings(), Ready(), idle_timeout=made.openHandshakeTimeout
    )

    def open_one() -> Any:
        channel = site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        transport.protocol = channel  # type: ignore[attr-defined]  # as TCP's has
        channel.makeConnection(transport)
        channel.dataReceived(request())
        assert transport.value().startswith(b"HTTP/1.1 101")
        return transport

    return open_one


def cpu_per_handshake(
    path: Callable[[ServerFactory], Callable[[], Any]], n: int, rounds: int
) -> float:
    best = float("inf")
    warm = path(factory())
    for _ in range(min(n, 50)):
        warm()  # first-use costs (imports, caches) out of the count
    for _ in range(rounds):
        made = factory()
        open_one = path(made)
        kept = []
        gc.collect()
        started = time.process_time()
        for _ in range(n):
            kept.append(open_one())
        best = min(best, (time.process_time() - started) / n)
        made.connections.clear()
    return best


def bytes_per_connection(path: Callable[[ServerFactory], Callable[[], Any]], n: int) -> float:
    made = factory()
    open_one = path(made)
    open_one()  # first-use allocations (caches, imports) out of the count
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = [open_one() for _ in range(n)]
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(kept) == n
    return grown / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    figures: dict[str, dict[str, float]] = {}
    for name, path in (("Autobahn parses the handshake", through_autobahn),
                       ("twisted.web site, then Autobahn", through_site)):  # fmt: skip
        cpu = cpu_per_handshake(path, args.handshakes, args.rounds)
        memory = bytes_per_connection(path, args.handshakes)
        figures[name] = {"cpu_seconds": cpu, "bytes": memory}
    base = figures["Autobahn parses the handshake"]
    for name, figure in figures.items():
        rows.append([
            name,
            f"{figure['cpu_seconds'] * 1e6:.0f}",
            f"{figure['cpu_seconds'] / base['cpu_seconds']:.2f}",
            f"{figure['bytes'] / 1024:.2f}",
            f"{(figure['bytes'] - base['bytes']) / 1024:+.2f}",
        ])  # fmt: skip
    header = ["path", "CPU µs / handshake", "÷ Autobahn", "KiB / connection", "± Autobahn KiB"]
    print("\n".join(format_table([header, *rows])))
    out = write_json(
        args.out or BENCH / "results" / "handshake_cost.json",
        {
            "benchmark": "handshake_cost",
            "environment": environment(["twisted", "autobahn"]),
            "handshakes": args.handshakes,
            "figures": figures,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
