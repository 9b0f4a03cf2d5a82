"""
Instructions per keepalive cycle, in process: a regression guard that does not
care how noisy the machine is, and a map of where a cycle's instructions go.

One cycle on one server connection over an in-memory transport (a
``StringTransport`` and a ``task.Clock``): the timer fires, the Ping is
written, the client's Pong is parsed, the next deadline is set.  K connections
(``--connections``, default 50) share one factory and go through their cycles
together, as the ~80 connections due in each 20 ms slot of a server of 4,000
connections at 1 s do; every figure is per connection and cycle.  The clock
runs 5 ms behind each nominal second, as a busy reactor does.  Variants:

- ``empty``: the measuring harness alone (subtracted from the others: "net");
- ``floor``: ``sendPing`` on plain Autobahn from one shared loop + the Pong
  parsed and ignored (bench/cpu_per_ping.py's floor);
- ``limit``: one ready-made Ping frame per connection handed to the transport
  from one shared loop + the Pong parsed and ignored (its limit);
- ``timer``: the floor plus one ``callLater`` per connection per cycle: the
  least a per-connection timer adds;
- ``ours``: ``KeepaliveMixin`` (ping_interval = ping_timeout = 1 s,
  first_ping_spread 0 so that the K connections share their slots).

Under ``--callgrind`` each variant runs in its own ``valgrind --tool=callgrind
--collect-atstart=no --toggle-collect=ffi_call`` process, its measured steps
called from C through ctypes (see ``_callgrind.py``): imports, set-up, building
the Pong frames and warm-up cycles are not counted.  ``--attribute`` also
counts, one valgrind run each, the inclusive instructions of the Python
functions of a cycle listed in :data:`TARGETS` (and how often each runs).
Without ``--callgrind`` it times the same loop with ``perf_counter`` (noisy).

    python bench/callgrind_cycle.py --callgrind               # 2000 cycles per variant
    python bench/callgrind_cycle.py --callgrind --attribute   # + per function: ~5 min
    python bench/callgrind_cycle.py --callgrind --smoke       # a few cycles (CI)
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from _callgrind import TOGGLE, Attributed, Measured, direct, run_callgrind  # noqa: E402
from _report import environment, format_table, write_json  # noqa: E402

VARIANTS = ("empty", "floor", "limit", "timer", "ours")
INTERVAL = 1.0
#: Seconds the harness clock runs behind each nominal second.
LATE = 0.005
PAYLOAD = b"\x00\x00\x00\x01"
FRAME = bytes([0x89, len(PAYLOAD)]) + PAYLOAD  # the limit's ready-made Ping
_MASK = b"\x37\xfa\x21\x3d"  # a fixed client mask: no randomness in the harness

_WS = "autobahn.twisted.websocket:WebSocketAdapterProtocol"
#: (label, function) per variant for --attribute, in the order of a cycle;
#: indentation in a label means "called from the one above".
TARGETS: dict[str, list[tuple[str, str]]] = {
    "ours": [
        ("Ping: the slot fires (all of it)", "twisted_keepalive.core.wheel:TimerWheel._fire"),
        ("  KeepaliveLink.wake", "twisted_keepalive.glue.link:KeepaliveLink.wake"),
        ("    Heartbeat.wake", "twisted_keepalive.core.heartbeat:Heartbeat.wake"),
        ("    Link.send_keepalive", "twisted_keepalive.autobahn.link:Link.send_keepalive"),
        ("KeepaliveLink.reschedule (Ping and Pong)",
         "twisted_keepalive.glue.link:KeepaliveLink.reschedule"),
        ("Pong: KeepaliveMixin.dataReceived (all of it)",
         "twisted_keepalive.autobahn.mixin:KeepaliveMixin.dataReceived"),
        ("Pong: Autobahn's dataReceived (all of it)", f"{_WS}.dataReceived"),
        ("  KeepaliveMixin._dataReceived",
         "twisted_keepalive.autobahn.mixin:KeepaliveMixin._dataReceived"),
        ("    inbound.read_lone_pong", "twisted_keepalive.autobahn.mixin:read_lone_pong"),
        ("    Autobahn: parse and dispatch",
         "autobahn.websocket.protocol:WebSocketProtocol._dataReceived"),
        ("      KeepaliveMixin._onPong", "twisted_keepalive.autobahn.mixin:KeepaliveMixin._onPong"),
        ("        KeepaliveLink.pong_received",
         "twisted_keepalive.glue.link:KeepaliveLink.pong_received"),
        ("          Heartbeat.pong_received",
         "twisted_keepalive.core.heartbeat:Heartbeat.pong_received"),
        ("        Autobahn's _onPong", f"{_WS}._onPong"),
        ("task.Clock.callLater (harness clock)", "twisted.internet.task:Clock.callLater"),
        ("DelayedCall.cancel", "twisted.internet.base:DelayedCall.cancel"),
    ],
    "limit": [
        ("Pong: Autobahn's dataReceived (all of it)", f"{_WS}.dataReceived"),
        ("    Autobahn: parse and dispatch",
         "autobahn.websocket.protocol:WebSocketProtocol._dataReceived"),
        ("        Autobahn's _onPong", f"{_WS}._onPong"),
    ],
}  # fmt: skip


def pong_frame(payload: bytes) -> bytes:
    """The client's masked Pong for ``payload`` (at most 125 bytes)."""
    masked = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x8A, 0x80 | len(payload)]) + _MASK + masked


def ping_payload(written: bytes) -> bytes:
    """The payload of the one unmasked Ping frame in ``written``."""
    if len(written) < 2 or written[0] != 0x89 or len(written) != 2 + (written[1] & 0x7F):
        raise AssertionError(f"expected exactly one Ping frame, the server wrote {written!r}")
    return written[2:]


def open_connections(protocol_class: type, clock: Any, count: int) -> list[Any]:
    """``count`` server connections of one factory, past their opening handshake."""
    from autobahn.twisted.websocket import WebSocketServerFactory
    from twisted.internet.address import IPv4Address

    from tests.unit.wire import _AbortingTransport, upgrade

    factory = WebSocketServerFactory("ws://127.0.0.1:9000")
    factory.protocol = protocol_class
    factory.setProtocolOptions(openHandshakeTimeout=0)
    opened = []
    for _ in range(count):
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        protocol.clock = clock
        transport = _AbortingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        protocol.makeConnection(transport)
        upgrade(protocol.dataReceived, transport)
        opened.append(protocol)
    return opened


class Cycle:
    """
    One variant's K connections and the steps of a round: ``fire`` (the timer
    fires and every connection's Ping is written) and each connection's Pong.
    """

    def __init__(self, variant: str, connections: int) -> None:
        from autobahn.twisted.websocket import WebSocketServerProtocol
        from twisted.internet.task import Clock

        from twisted_keepalive import KeepaliveMixin

        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        clock = self.clock = Clock()
        protocol_class: type = WebSocketServerProtocol
        if variant == "ours":

            class Ours(KeepaliveMixin, WebSocketServerProtocol):
                ping_interval = INTERVAL
                ping_timeout = INTERVAL
                first_ping_spread = 0.0

            protocol_class = Ours
        protocols = self.protocols = open_connections(protocol_class, clock, connections)
        self.variant = variant
        self.rounds = 0

        def advance() -> None:
            # Every round ends LATE after a nominal second.
            clock.advance(INTERVAL + (LATE if self.rounds == 0 else 0.0))
            self.rounds += 1

        def ping_all() -> None:
            for protocol in protocols:
                protocol.sendPing(PAYLOAD)

        def write_all() -> None:
            for protocol in protocols:
                protocol.transport.write(FRAME)

        def ping_and_rearm(protocol: Any) -> None:
            protocol.sendPing(PAYLOAD)
            clock.callLater(INTERVAL, ping_and_rearm, protocol)

        self.fire: Callable[[], object]
        if variant in ("ours", "timer"):
            if variant == "timer":
                for protocol in protocols:
                    clock.callLater(INTERVAL, ping_and_rearm, protocol)
            self.fire = advance
        else:
            self.fire = {"floor": ping_all, "limit": write_all, "empty": lambda: None}[variant]

    def run(self, rounds: int, step: Callable[..., object]) -> None:
        empty = self.variant == "empty"
        for _ in range(rounds):
            step(self.fire, ())
            for protocol in self.protocols:
                if empty:
                    step(_nothing, (b"",))
                    continue
                transport = protocol.transport
                pong = pong_frame(ping_payload(transport.value()))
                transport.clear()
                step(protocol.dataReceived, (pong,))
                if transport.value():
                    raise AssertionError(f"unexpected reply to a Pong: {transport.value()!r}")


def _nothing(_: bytes) -> None:
    pass


def inner(variant: str, cycles: int, warmup: int, connections: int, count: str | None) -> str:
    """Run the measured cycles; what the wrapper reads, as one JSON line."""
    cycle = Cycle(variant, connections)
    cycle.run(max(1, warmup // connections), direct)
    rounds = max(1, cycles // connections)
    gc.collect()
    started = time.perf_counter()
    if count is None:
        cycle.run(rounds, Measured())
        calls = rounds * (1 + connections)
    else:
        # Only calls to one function are counted; everything else runs directly.
        try:
            target = Attributed(count)
        except (ImportError, AttributeError, ValueError):
            # Not in this version of the code (an A/B run of another tree).
            return json.dumps({"absent": True, "calls": 0, "cycles": rounds * connections})
        target.patch()
        try:
            cycle.run(rounds, direct)
        finally:
            target.unpatch()
        calls = target.calls
    seconds = time.perf_counter() - started
    return json.dumps({"seconds": seconds, "calls": calls, "cycles": rounds * connections})


def attribute(args: argparse.Namespace, valgrind: str, per_call: float) -> list[dict[str, Any]]:
    """Inclusive instructions per cycle of each target function."""
    found = []
    for variant in args.attribute_variants:
        for label, target in TARGETS[variant]:
            print(f"[{variant} {target}] ...", file=sys.stderr, flush=True)
            total, out = run_callgrind(
                __file__, [*inner_args(args, variant), "--count", target], valgrind, nothing_ok=True
            )
            ran = json.loads(out.strip().splitlines()[-1])
            net = None if ran.get("absent") else (total - ran["calls"] * per_call) / ran["cycles"]
            found.append(
                {
                    "variant": variant,
                    "label": label,
                    "target": target,
                    "calls_per_cycle": ran["calls"] / ran["cycles"],
                    "ir_per_cycle": net,
                }
            )
    return found


def inner_args(args: argparse.Namespace, variant: str) -> list[str]:
    return [
        "--inner",
        variant,
        "--cycles",
        str(args.cycles),
        "--warmup",
        str(args.warmup),
        "--connections",
        str(args.connections),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions under valgrind (else time with perf_counter)",
    )
    parser.add_argument("--cycles", type=int, default=None, help="measured cycles (default 2000)")
    parser.add_argument("--warmup", type=int, default=100, help="uncounted cycles first")
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help="connections sharing the timer slots (default 50; 5 with --smoke)",
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--attribute",
        default="",
        metavar="VARIANTS",
        nargs="?",
        const="ours,limit",
        help="with --callgrind: also count each function of TARGETS (default for ours and limit)",
    )
    parser.add_argument("--out", default=str(BENCH / "results" / "callgrind_cycle.json"))
    parser.add_argument("--smoke", action="store_true", help="a few cycles: proves it runs (CI)")
    parser.add_argument("--inner", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--count", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cycles is None:
        args.cycles = 20 if args.smoke else 2000
    if args.connections is None:
        args.connections = 5 if args.smoke else 50
    if args.smoke:
        args.warmup = min(args.warmup, 10)
    if args.inner:
        print(inner(args.inner, args.cycles, args.warmup, args.connections, args.count))
        return 0
    args.attribute_variants = [v for v in (args.attribute or "").split(",") if v]
    if set(args.attribute_variants) - set(TARGETS):
        parser.error(f"--attribute takes some of {', '.join(TARGETS)}")

    variants = [v for v in args.variants.split(",") if v]
    if "empty" not in variants:
        variants.insert(0, "empty")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; expected some of {', '.join(VARIANTS)}")

    valgrind = shutil.which("valgrind") if args.callgrind else None
    if args.callgrind:
        if valgrind is None:
            print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
            return 2
        unit = "Ir"

        def measure(v: str) -> tuple[float, int]:
            total, out = run_callgrind(__file__, inner_args(args, v), valgrind)
            return total, json.loads(out.strip().splitlines()[-1])["cycles"]

    else:
        # Best of five: the least disturbed by whatever else the machine runs.
        unit = "ns"

        def measure(v: str) -> tuple[float, int]:
            runs = [
                json.loads(inner(v, args.cycles, args.warmup, args.connections, None))
                for _ in range(5)
            ]
            return min(r["seconds"] for r in runs) * 1e9, runs[0]["cycles"]

    totals, per_cycle = {}, {}
    for variant in variants:
        print(f"[{variant}] ...", file=sys.stderr, flush=True)
        totals[variant], cycles = measure(variant)
        per_cycle[variant] = totals[variant] / cycles
    net = {v: per_cycle[v] - per_cycle["empty"] for v in variants}
    floor, limit = net.get("floor"), net.get("limit")

    rows = [
        ("variant", f"{unit} total", f"{unit}/cycle", f"net {unit}/cycle", "x floor", "x limit")
    ]
    for v in variants:

        def ratio(to: float | None, v: str = v) -> str:
            return "-" if not to or v == "empty" else f"{net[v] / to:.2f}"

        rows.append(
            (
                v,
                f"{totals[v]:.0f}",
                f"{per_cycle[v]:.0f}",
                "-" if v == "empty" else f"{net[v]:.0f}",
                ratio(floor),
                ratio(limit),
            )
        )
    how = (
        f"instructions (callgrind, collected under {TOGGLE} only)"
        if args.callgrind
        else "wall-clock ns, best of 5 (noisy)"
    )
    print(
        f"{args.cycles} keepalive cycles per variant over {args.connections} connections; "
        f"{how}; per connection and cycle; net = minus the empty harness"
    )
    print("\n".join(format_table(rows)))

    found: list[dict[str, Any]] = []
    if args.attribute_variants and valgrind is not None:
        # The trampoline's own cost per counted call, from the empty harness.
        empty_calls = max(1, args.cycles // args.connections) * (1 + args.connections)
        found = attribute(args, valgrind, totals["empty"] / empty_calls)
        rows = [("variant", "function (inclusive)", "calls/cycle", "Ir/cycle")]
        rows += [
            (
                f["variant"],
                f["label"],
                "absent" if f["ir_per_cycle"] is None else f"{f['calls_per_cycle']:.2f}",
                "-" if f["ir_per_cycle"] is None else f"{f['ir_per_cycle']:.0f}",
            )
            for f in found
        ]
        print("\nwhere a cycle's instructions go (each function's own valgrind run)")
        print("\n".join(format_table(rows)))

    out = write_json(
        args.out,
        {
            "benchmark": "callgrind_cycle",
            "unit": unit,
            "settings": {
                "cycles": args.cycles,
                "warmup": args.warmup,
                "connections": args.connections,
                "late": LATE,
                "callgrind": args.callgrind,
                "toggle_collect": TOGGLE if args.callgrind else None,
            },
            "environment": environment(("twisted", "autobahn", "txaio")),
            "totals": totals,
            "per_cycle": per_cycle,
            "net_per_cycle": net,
            "ratio_to_floor": {v: net[v] / floor for v in variants if floor and v != "empty"},
            "ratio_to_limit": {v: net[v] / limit for v in variants if limit and v != "empty"},
            "attribution": found,
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
