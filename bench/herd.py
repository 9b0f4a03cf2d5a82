"""
Thundering herd: after a restart every client reconnects at once; do their
keepalive Pings stay in step?  (issue 9, §4)

``twistd wskeepalive`` (10 s interval and timeout) receives 6,000 clients
connecting within about 2 s from one Node process (bench/load.mjs), which
counts the Pings its clients receive per 500 ms.  Over the third interval
after the first connect (20-30 s), peak / mean of those counts says how
bunched the Pings are: 1.0 is perfectly even.  Each ``first_ping_spread`` in
turn, with a fresh server (``--protocol protocols.Spread0`` etc., see
bench/protocols.py):

- 0.0: the first Ping one interval after each handshake (no jitter);
- 0.5: at a random point of the second half of the first interval;
- 1.0: anywhere in the first interval (the library's default).

The clients also histogram, in 10 ms steps, the delay from open to the first
Ping and between Pings: no Ping may come later than one interval after the
previous one (or after the handshake).

Run from the repository root, after ``npm ci --prefix bench``::

    python bench/herd.py            # 6,000 clients, 10 s: ~3 min
    python bench/herd.py --smoke    # 60 clients, 1 s interval (CI)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _procs import LoadGenerator, load_generator_ready, node_version
from _report import environment, format_table, write_json
from scale import Server

BENCH = Path(__file__).resolve().parent

#: first_ping_spread -> the protocol that sets it (None: the default, 1.0).
SPREADS: dict[float, str | None] = {
    0.0: "protocols.Spread0",
    0.5: "protocols.Spread05",
    1.0: None,
}


@dataclass
class Result:
    spread: float
    failed: str | None = None
    opened: int = 0
    open_failures: int = 0
    connect_s: float = 0.0  # first connect to the last connection open
    bins: list[int] = field(default_factory=list)  # Pings per bin since the first connect
    window: list[int] = field(default_factory=list)  # the bins of the third interval
    peak: int = 0
    mean: float = 0.0
    peak_over_mean: float | None = None
    first_ping_max_s: float | None = None  # open -> first Ping, the longest
    gap_max_s: float | None = None  # Ping -> next Ping, the longest
    closed: int = 0  # by the server during the run (a false timeout)


def measure(args: argparse.Namespace, spread: float) -> Result:
    result = Result(spread)
    server_args = argparse.Namespace(**vars(args))
    server_args.protocol = SPREADS[spread]
    server = Server(server_args, args.interval, args.interval, "scheduled", tag=f"{spread:g}")
    load = None
    try:
        server.wait_ready(1)
        load = LoadGenerator(
            args.node,
            server.url,
            args.clients,
            args.concurrency,
            {"bin-ms": args.bin_ms, "gaps": 1},
        )
        opened = load.wait_for("open", 120)
        result.opened = opened["opened"]
        result.open_failures = opened["failed"]
        result.connect_s = opened["t"] - opened["t0"]
        # The third interval after the first connect, and one bin more so
        # that its last bin is complete.
        end = opened["t0"] + 3 * args.interval + args.bin_ms / 1000
        time.sleep(max(0.0, end - opened["t"]) + 0.2)
        counts = load.counts()
        result.bins = counts["bins"]
        result.closed = counts["closed"]
        per_interval = round(args.interval * 1000 / args.bin_ms)
        padded = result.bins + [0] * (3 * per_interval)
        result.window = padded[2 * per_interval : 3 * per_interval]
        result.peak = max(result.window)
        result.mean = sum(result.window) / len(result.window)
        if result.mean:
            result.peak_over_mean = result.peak / result.mean
        result.first_ping_max_s = _longest(counts["first"])
        result.gap_max_s = _longest(counts["gaps"])
        return result
    except Exception as e:
        result.failed = f"{type(e).__name__}: {e}"
        return result
    finally:
        if load is not None:
            load.close()
        server.stop(timeout=30)


def _longest(histogram: dict[str, int]) -> float | None:
    """The largest value of a load.mjs histogram (10 ms steps), seconds."""
    steps = [int(step) for step, count in histogram.items() if count]
    return max(steps) / 100 if steps else None


def table(results: list[Result], args: argparse.Namespace) -> str:
    header = (
        "first_ping_spread",
        "clients",
        "connect s",
        "pings in window",
        f"peak/{args.bin_ms}ms",
        f"mean/{args.bin_ms}ms",
        "peak/mean",
        "first ping max",
        "gap max",
        "closed",
    )
    rows = [header]
    for r in results:
        if r.failed:
            rows.append((f"{r.spread:g}", "FAILED: " + r.failed[:60], *[""] * (len(header) - 2)))
            continue
        rows.append(
            (
                f"{r.spread:g}" + (" (default)" if r.spread == 1.0 else ""),
                str(r.opened),
                f"{r.connect_s:.1f}",
                str(sum(r.window)),
                str(r.peak),
                f"{r.mean:.0f}",
                "-" if r.peak_over_mean is None else f"{r.peak_over_mean:.2f}",
                "-" if r.first_ping_max_s is None else f"{r.first_ping_max_s:.2f}s",
                "-" if r.gap_max_s is None else f"{r.gap_max_s:.2f}s",
                str(r.closed),
            )
        )
    lines = [
        f"{args.clients} clients, ping interval = timeout = {args.interval:g} s; Pings the "
        f"clients saw per {args.bin_ms} ms over the third interval after the first connect "
        f"({2 * args.interval:g}-{3 * args.interval:g} s)",
        *format_table(rows),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=None, help="default 6000 (60 with --smoke)")
    parser.add_argument(
        "--interval", type=float, default=None, help="ping interval and timeout, s (10; 1 smoke)"
    )
    parser.add_argument(
        "--bin-ms", type=int, default=None, help="bin width, ms (default 500; 100 with --smoke)"
    )
    parser.add_argument(
        "--spreads",
        default=",".join(f"{s:g}" for s in SPREADS),
        help="comma-separated first_ping_spread values, of 0, 0.5, 1",
    )
    parser.add_argument(
        "--concurrency", type=int, default=1024, help="handshakes in flight while connecting"
    )
    parser.add_argument("--out", default=str(BENCH / "results" / "herd.json"))
    parser.add_argument("--node", default=shutil.which("node") or "node")
    parser.add_argument("--smoke", action="store_true", help="a few clients, 1 s interval (CI)")
    args = parser.parse_args(argv)
    if args.clients is None:
        args.clients = 60 if args.smoke else 6000
    if args.interval is None:
        args.interval = 1.0 if args.smoke else 10.0
    if args.bin_ms is None:
        args.bin_ms = 100 if args.smoke else 500
    spreads = [float(v) for v in args.spreads.split(",") if v]
    unknown = set(spreads) - set(SPREADS)
    if unknown:
        parser.error(f"--spreads must be some of 0, 0.5, 1, not {sorted(unknown)}")
    args.spreads = spreads
    # What scale.Server reads.
    args.workers = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not load_generator_ready():
        return 2
    results = []
    for spread in args.spreads:
        print(f"[spread {spread:g}] ...", file=sys.stderr, flush=True)
        result = measure(args, spread)
        print(
            f"[spread {spread:g}] {result.failed or f'peak/mean {result.peak_over_mean}'}",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    print(table(results, args))
    env: dict[str, Any] = environment(("twisted", "autobahn", "txaio"))
    env["node"] = node_version(args.node)
    out = write_json(
        args.out,
        {
            "benchmark": "herd",
            "settings": vars(args),
            "environment": env,
            "results": [asdict(r) for r in results],
        },
    )
    print(f"wrote {out}")
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
