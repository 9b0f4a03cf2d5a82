"""
Half a million connections on one machine (issue 18): ``twistd -n
wskeepalive --workers N`` at the defaults (20 s / 20 s) holding 500,000
keepalive connections for minutes, measured as bench/scale.py measures
(ping lateness per worker from the server's own histogram, false timeouts,
the gaps the clients saw, GC, CPU, RSS, the SIGTERM), plus what such a run
needs and scale.py's 127.0.0.x loaders lack:

- a network namespace of its own, so that its kernel settings
  (``net.core.somaxconn``, ``net.ipv4.tcp_max_syn_backlog``, the ephemeral
  port range) and its socket counters (``/proc/net/sockstat``) are the run's
  alone, and the host's are left as they were;
- load generators of at most ``--per-loader`` sockets each (the hard limit
  of 20,000 open files per process), each over ``--addresses`` loopback
  source addresses of its own (127.<10+i>.0.1 ...);
- connects paced at ``--rate`` per second overall, so that every handshake
  completes inside Autobahn's 5 s opening-handshake timeout;
- the CPU of the open phase (twistd, its workers, the loaders), with each
  ``--connection-log`` value given: what per-connection logging costs.

The default client is bench/raw_clients.py (a few hundred bytes and a few
µs of Python per connection and Ping); ``--client ws`` runs Node's ``ws``
(bench/load.mjs, paced by ``--concurrency`` handshakes in flight instead).

Run from the repository root as root, after ``npm ci --prefix bench``::

    python bench/half_million.py                                  # 500,000 over 30 workers
    python bench/half_million.py --connections 100000 --workers 6 --hold 30 \\
        --connection-log on,off                                   # what the log lines cost
    python bench/half_million.py --smoke                          # 200 connections (CI)

Without root (``--smoke`` only) it runs on the host's loopback, unchanged.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _procs import LoadGenerator, load_generator_ready, node_version
from _report import environment, write_json
from scale import MAX_PER_LOADER, Run, machine_fields, measure, sockstat, table

BENCH = Path(__file__).resolve().parent

#: The namespace's kernel settings: queues deep enough for a paced open, and
#: every port above 1023 for the clients.
SYSCTLS = {
    "net.core.somaxconn": "65535",
    "net.ipv4.tcp_max_syn_backlog": "65535",
    "net.ipv4.ip_local_port_range": "1024 65535",
}


def loaders_for(args: argparse.Namespace, url: str, plan: list[int]) -> list[LoadGenerator]:
    """The run's load generators, each over ``args.addresses`` source addresses of its own."""
    loaders = []
    for i, count in enumerate(plan):
        addresses = ",".join(f"127.{10 + i}.0.{n}" for n in range(1, args.addresses + 1))
        options: dict[str, object] = {"local-address": addresses, "gaps": 1}
        program = None
        if args.client == "raw":
            program = (sys.executable, str(BENCH / "raw_clients.py"))
            options["rate"] = args.rate * count / args.connections
        loaders.append(LoadGenerator(args.node, url, count, args.concurrency, options, program))
    return loaders


class Timeline(threading.Thread):
    """
    Every ``every`` seconds of a run: the namespace's TCP sockets and their
    buffer pages, the machine's CPU per core since the last sample, memory
    available, and the heartbeat timeouts the server has logged so far (its
    log's warnings): where a run that breaks broke, and at what count.
    """

    def __init__(self, log: Path, every: float) -> None:
        super().__init__(daemon=True)
        self.log, self.every = log, every
        self.samples: list[dict[str, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        start, last = time.monotonic(), machine_fields()
        while not self.stopped.wait(self.every):
            fields = machine_fields()
            spent = [b - a for a, b in zip(last, fields, strict=True)]
            last, total = fields, max(1e-9, sum(spent))
            tcp = sockstat()
            self.samples.append({
                "t": round(time.monotonic() - start, 1),
                "tcp_inuse": tcp.get("inuse", 0), "tcp_mem_pages": tcp.get("mem", 0),
                "user_pct": round(100 * spent[0] / total, 1),
                "system_pct": round(100 * spent[2] / total, 1),
                "softirq_pct": round(100 * spent[6] / total, 1),
                "idle_pct": round(100 * (spent[3] + spent[4]) / total, 1),
                "mem_available_mib": _mem_available_mib(),
                "timeouts_logged": _count(self.log, b"keepalive ping timeout"),
            })  # fmt: skip


def _mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def _count(path: Path, needle: bytes) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(needle) for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0


def namespace_counters() -> dict[str, Any]:
    """Conntrack's count in this namespace, if conntrack is loaded at all."""
    path = Path("/proc/sys/net/netfilter/nf_conntrack_count")
    return {"nf_conntrack_count": int(path.read_text())} if path.exists() else {}


def summary(run: Run) -> list[str]:
    """The figures scale.py's table leaves out: per core, per connection, the open phase."""
    cores = os.cpu_count() or 1
    cpu = run.machine_cpu_percent
    opened = max(1, run.opened)
    server_rss = sum(p.rss_mib - p.rss_idle_mib for p in run.per_worker)
    pages = run.sockstat.get("mem", 0)
    lines = [
        f"  open phase CPU s: twistd {run.open_cpu_s.get('parent', 0):.1f}, workers "
        f"{run.open_cpu_s.get('workers', 0):.1f}, loaders {run.open_cpu_s.get('loaders', 0):.1f} "
        f"over {run.ramp_s:.0f} s",
        f"  hold CPU per core ({cores} cores): "
        + ", ".join(f"{k} {v / cores:.1f}%" for k, v in cpu.items() if k != "idle" and v)
        + f"; idle {cpu.get('idle', 0) / cores:.1f}%; workers {run.total.cpu_percent:.0f}%, "
        f"twistd {run.parent_cpu_percent:.1f}%, loaders {run.loaders_cpu_percent:.0f}% of one core",
        f"  RSS per connection: server {server_rss * 1024 / opened:.1f} KiB, load generators "
        f"{run.loaders_rss_mib * 1024 / opened:.2f} KiB; kernel sockstat {run.sockstat} "
        f"({pages * 4 / opened:.2f} KiB/conn of TCP buffers)",
    ]
    return lines


def inside(args: argparse.Namespace) -> int:
    """Every run, in this namespace (or on the host, for a smoke run without root)."""
    runs: list[Run] = []
    extra: dict[str, Any] = {}
    timelines: dict[str, list[dict[str, float]]] = {}
    for value in args.connection_log:
        args.server_extra = ["--connection-log", value, "--drain-spread", f"{args.drain_spread:g}"]
        print(f"[{args.connections} conns, --connection-log {value}] ...", file=sys.stderr)
        # Where scale.Server writes the server's log.
        name = f"{Path(args.out).stem}-{args.interval:g}-scheduled.log"
        log = Path(tempfile.gettempdir()) / "wskeepalive-bench" / name
        timeline = Timeline(log, args.sample_every)
        timeline.start()
        run = measure(args, args.interval, "scheduled", start_loaders=loaders_for)
        timeline.stopped.set()
        timelines[value] = timeline.samples
        run.notes.append(f"--connection-log {value}")
        extra[value] = namespace_counters()
        runs.append(run)
        print(table([run]), flush=True)
        print("\n".join(summary(run)), flush=True)
    env = environment(("twisted", "autobahn", "txaio", "prometheus_client"))
    env["node"] = node_version(args.node)
    env["loadavg"] = Path("/proc/loadavg").read_text().strip()
    settings = {k: v for k, v in vars(args).items() if k not in ("inside", "server_extra")}
    data = {
        "benchmark": "half_million",
        "settings": settings,
        "environment": env,
        "namespace": {"sysctls": SYSCTLS if args.netns else {}, "counters": extra},
        "runs": [asdict(run) for run in runs],
        "timelines": timelines,
    }
    print(f"wrote {write_json(args.out, data)}")
    return 1 if any(r.failed or r.opened < r.connections for r in runs) else 0


def in_namespace(argv: list[str]) -> int:
    """Make the run's namespace, set its kernel settings, and run this script inside."""
    name = f"wsh500-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        exec_in = ["ip", "netns", "exec", name]
        subprocess.run([*exec_in, "ip", "link", "set", "lo", "up"], check=True)
        for key, value in SYSCTLS.items():
            subprocess.run([*exec_in, "sysctl", "-q", "-w", f"{key}={value}"], check=True)
        command = [*exec_in, sys.executable, __file__, *argv, "--inside"]
        return subprocess.run(command, cwd=Path.cwd()).returncode
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=None, help="default 500000")
    parser.add_argument("--workers", type=int, default=None, help="default 30")
    parser.add_argument("--rate", type=float, default=2500.0, help="connects/s overall (raw)")
    parser.add_argument("--hold", type=float, default=None, help="s held (default 180)")
    parser.add_argument("--per-loader", type=int, default=18_500)
    parser.add_argument("--addresses", type=int, default=8, help="source addresses per loader")
    parser.add_argument("--client", choices=("raw", "ws"), default="raw")
    parser.add_argument("--concurrency", type=int, default=64, help="ws: handshakes in flight")
    parser.add_argument(
        "--connection-log", default="off", help="comma-separated on/off: one run each"
    )
    parser.add_argument("--scrape-every", type=float, default=10.0)
    parser.add_argument("--close-timeout", type=float, default=10.0)
    parser.add_argument(
        "--drain-spread",
        type=float,
        default=5.0,
        help="the server's --drain-spread, s: 100,000 closes did not fit in the default 5 s "
        "(+ 10 s close timeout + 5 s) on two cores",
    )
    parser.add_argument("--sample-every", type=float, default=10.0, help="s between timeline rows")
    parser.add_argument("--out", default=str(BENCH / "results" / "scale-500k.json"))
    parser.add_argument("--node", default=shutil.which("node") or "node")
    parser.add_argument("--smoke", action="store_true", help="200 connections, seconds")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    small = {"connections": 200, "workers": 2, "hold": 3.0}
    large = {"connections": 500_000, "workers": 30, "hold": 180.0}
    for key, value in (small if args.smoke else large).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.smoke:
        args.per_loader, args.addresses, args.rate = 100, 4, 400.0
        args.scrape_every, args.close_timeout, args.sample_every = 1.0, 3.0, 1.0
    # The defaults (20 s / 20 s); a smoke run would wait 20 s for its first Pings.
    args.interval = 1.0 if args.smoke else 20.0
    args.connection_log = [v for v in args.connection_log.split(",") if v]
    if not 1 <= args.per_loader <= MAX_PER_LOADER:
        parser.error(f"--per-loader must be 1 to {MAX_PER_LOADER}, not {args.per_loader}")
    if not args.connection_log or set(args.connection_log) - {"on", "off"}:
        parser.error("--connection-log must be on, off or on,off")
    # What scale.measure reads beside these.
    args.timeout, args.protocol, args.churn = None, None, 0.0
    args.netns = os.geteuid() == 0 and shutil.which("ip") is not None
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.inside or (args.smoke and not args.netns):
        return inside(args)
    if not load_generator_ready():
        return 2
    if not args.netns:
        print("half_million.py: needs root and ip(8), for a network namespace", file=sys.stderr)
        return 2
    return in_namespace(argv)


if __name__ == "__main__":
    sys.exit(main())
