"""
How many keepalive connections one machine holds across three backends
behind HAProxy (issue 15's scale figure): ``twistd -n wskeepalive`` at the
defaults (20 s / 20 s), HAProxy on ``deploy/haproxy.cfg`` unchanged, Node
``ws`` clients (bench/load.mjs) through it.

One HAProxy process holds two descriptors per connection, and the hard
open-file limit here is 20,000 per process: ``deploy/haproxy.cfg`` says
``maxconn 9000``.  More connections than that take more HAProxy processes on
the same port (HAProxy binds with SO_REUSEPORT, the kernel spreads new
connections over them), exactly as an operator scales a balancer host.

Run from the repository root, after ``npm ci --prefix bench`` and with
``haproxy`` installed::

    python bench/fleet_scale.py                       # 54,000 connections, 6 HAProxy, 180 s
    python bench/fleet_scale.py --connections 27000 --balancers 3
    python bench/fleet_scale.py --smoke               # 300 connections, a few seconds

It prints a table (per process group: connections, RSS per connection, CPU
per core over the hold) and writes bench/results/fleet_scale.json.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _metrics import difference, format_bound, quantile_bound, scrape
from _procs import (
    ROOT,
    LoadGenerator,
    children,
    cpu_seconds,
    free_port,
    load_generator_ready,
    rss_kib,
)
from _report import environment, format_table, write_json

TWISTD = Path(sys.executable).with_name("twistd")
HAPROXY_CONFIG = ROOT / "deploy" / "haproxy.cfg"
#: Connections per HAProxy process: deploy/haproxy.cfg's maxconn.
PER_BALANCER = 9000
#: Connections per load-generator process (its own 20,000 descriptors).
PER_GENERATOR = 18000


def start_backend(
    workdir: Path, number: int, workers: int
) -> tuple[subprocess.Popen[bytes], int, str]:
    """One ``twistd -n wskeepalive`` at the defaults; (process, port, metrics URL)."""
    port, metrics = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
               os.environ.get("PYTHONPATH")])))  # fmt: skip
    log = (workdir / f"backend-{number}.log").open("wb")
    process = subprocess.Popen(
        [str(TWISTD), "-n", "--pidfile=", "--logfile=-", "wskeepalive",
         "--listen", f"tcp:{port}:interface=127.0.0.1",
         "--metrics", f"tcp:{metrics}:interface=127.0.0.1", "--drain-grace", "3",
         "--workers", str(workers)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
    )  # fmt: skip
    return process, port, f"http://127.0.0.1:{metrics}/metrics"


def start_balancer(workdir: Path, number: int, bind: str, backends: list[int]) -> Any:
    """One HAProxy process on deploy/haproxy.cfg, the addresses from the environment."""
    env = dict(os.environ, WSK_BIND=bind)
    for index, port in enumerate(backends, 1):
        env[f"WSK_BACKEND_{index}"] = f"127.0.0.1:{port}"
    log = (workdir / f"haproxy-{number}.log").open("wb")
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin") or "haproxy"
    return subprocess.Popen([haproxy, "-db", "-f", str(HAPROXY_CONFIG)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=workdir)  # fmt: skip


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.5)


def kernel_tcp_kib() -> int:
    """The kernel's memory for TCP sockets (buffers), KiB, from /proc/net/sockstat."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


def group_figures(
    pids: list[int], cpu_before: dict[int, float], hold: float, idle: dict[int, int]
) -> tuple[int, float]:
    """
    (RSS KiB the connections added, summed; CPU share of one core over the
    hold) for processes ``pids``; a process without an idle figure (a load
    generator) counts all of its RSS.
    """
    rss = sum(rss_kib(pid) - idle.get(pid, 0) for pid in pids)
    cpu = sum(cpu_seconds(pid) - cpu_before[pid] for pid in pids)
    return rss, cpu / hold


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    node = shutil.which("node") or "node"
    started: list[Any] = []
    try:
        backends = [start_backend(workdir, n, args.workers) for n in (1, 2, 3)]
        started += [process for process, _, _ in backends]
        for _, _, url in backends:
            wait_until(lambda url=url: _scrapes(url), 30, "a backend serving metrics")
        if args.workers > 1:
            wait_until(lambda: all(len(children(b.pid)) >= args.workers for b, _, _ in backends),
                       30, "every backend's workers")  # fmt: skip
        for _, port, _ in backends:
            wait_until(lambda port=port: _accepts(port), 30, "a backend accepting")
        front = free_port()
        balancers = [
            start_balancer(workdir, n, f"127.0.0.1:{front}", [port for _, port, _ in backends])
            for n in range(1, args.balancers + 1)
        ]
        started += balancers
        time.sleep(2)  # the health checks mark every backend up (rise 2, inter 1 s)
        backend_pids = [pid for b, _, _ in backends for pid in [b.pid, *children(b.pid)]]
        idle = {pid: rss_kib(pid) for pid in [*backend_pids, *(b.pid for b in balancers)]}
        generators = []
        remaining, address = args.connections, 2
        opened_at = time.monotonic()
        while remaining > 0:
            count = min(remaining, PER_GENERATOR)
            generators.append(LoadGenerator(node, f"ws://127.0.0.1:{front}/", count,
                                            args.concurrency,
                                            {"local-address": f"127.0.0.{address}"}))  # fmt: skip
            remaining -= count
            address += 1
        started += [g.process for g in generators]
        opens = [g.wait_for("open", timeout=args.connections / 50 + 60) for g in generators]
        ramp = time.monotonic() - opened_at
        opened = sum(o["opened"] for o in opens)
        time.sleep(args.settle)  # every connection has had its first Ping by then
        before = [scrape(url) for _, _, url in backends]
        groups = {
            "backends": backend_pids,
            "haproxy": [b.pid for b in balancers],
            "load generators": [g.process.pid for g in generators],
        }
        cpu_before = {pid: cpu_seconds(pid) for pids in groups.values() for pid in pids}
        kernel_before = kernel_tcp_kib()
        held_from = time.monotonic()
        time.sleep(args.hold)
        hold = time.monotonic() - held_from
        after = [scrape(url) for _, _, url in backends]
        counts = [g.counts() for g in generators]
        figures = {
            name: group_figures(pids, cpu_before, hold, idle) for name, pids in groups.items()
        }
        return report(args, workdir, backends, before, after, counts, figures, ramp, opened, hold,
                      kernel_before)  # fmt: skip
    finally:
        for process in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _scrapes(url: str) -> bool:
    with contextlib.suppress(OSError):
        scrape(url, timeout=2)
        return True
    return False


def report(args: argparse.Namespace, workdir: Path, backends: Any, before: Any, after: Any,
           counts: Any, figures: Any, ramp: float, opened: int, hold: float,
           kernel_before: int) -> dict[str, Any]:  # fmt: skip
    per_backend = [int(a.value("connections_open")) for a in after]  # workers summed
    timeouts = sum(a.value("heartbeat_timeouts_total") for a in after)
    lateness: dict[float, float] = {}
    for b, a in zip(before, after, strict=True):
        for bound, n in difference(a.histogram("ping_lateness_seconds"),
                                   b.histogram("ping_lateness_seconds")).items():  # fmt: skip
            lateness[bound] = lateness.get(bound, 0.0) + n
    closed = sum(c.get("closed", 0) + c.get("failed", 0) for c in counts)
    errors: dict[str, int] = {}
    for c in counts:
        for code, n in {**c.get("errors", {}), **c.get("closeCodes", {})}.items():
            errors[code] = errors.get(code, 0) + n
    held = sum(per_backend)
    rows = [["group", "processes", "connections", "RSS added MiB", "KiB/conn", "CPU (cores)"]]
    for name, (rss, cpu) in figures.items():
        processes = {"backends": 3 * (args.workers + (args.workers > 1)),
                     "haproxy": args.balancers}.get(name, len(counts))  # fmt: skip
        rows.append([name, str(processes), f"{held:,}", f"{rss / 1024:.0f}",
                     f"{rss / max(held, 1):.1f}", f"{cpu:.3f}"])  # fmt: skip
    kernel = kernel_tcp_kib()
    # Four sockets a connection: the client's, HAProxy's two, the backend's.
    print(f"{args.connections:,} asked, {opened:,} opened in {ramp:.1f} s through "
          f"{args.balancers} HAProxy; held {hold:.0f} s at the defaults (20 s / 20 s)")  # fmt: skip
    print("\n".join(format_table(rows)))
    print(f"per backend: {', '.join(f'{n:,}' for n in per_backend)}; heartbeat timeouts "
          f"{timeouts:.0f}; connections closed or failed at the clients {closed} {errors}; ping "
          f"lateness p50 {format_bound(quantile_bound(lateness, 0.5), lateness)}, p99 "
          f"{format_bound(quantile_bound(lateness, 0.99), lateness)}; kernel TCP memory "
          f"{kernel / 1024:.0f} MiB ({kernel / max(held, 1):.1f} KiB per connection, its four "
          f"sockets); logs in {workdir}")  # fmt: skip
    return {
        "benchmark": "fleet_scale",
        "connections": args.connections, "balancers": args.balancers, "opened": opened,
        "workers_per_backend": args.workers,
        "ramp_seconds": ramp, "hold_seconds": hold, "per_backend": per_backend,
        "timeouts": timeouts, "closed_at_clients": closed, "client_errors": errors,
        "lateness": {str(k): v for k, v in lateness.items()},
        "groups": {name: {"rss_kib": rss, "cpu_cores": cpu}
                   for name, (rss, cpu) in figures.items()},
        "kernel_tcp_kib": kernel, "kernel_tcp_kib_before_hold": kernel_before,
        "environment": environment(["twisted", "autobahn"]),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--connections", type=int, default=54000)
    parser.add_argument("--balancers", type=int, default=0,
                        help="HAProxy processes (default: enough for --connections)")  # fmt: skip
    parser.add_argument("--hold", type=float, default=180.0, help="seconds held, all open")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--workers", type=int, default=1, help="--workers of each backend")
    parser.add_argument("--settle", type=float, default=25.0,
                        help="seconds after all opened before the hold: first Pings are spread "
                             "over the 20 s interval")  # fmt: skip
    parser.add_argument("--smoke", action="store_true",
                        help="300 connections, 5 s (for CI; give it an --out)")  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fleet_scale.json"))
    args = parser.parse_args()
    if args.smoke:
        args.connections, args.hold, args.settle = 300, 5.0, 1.0
    # The kernel spreads connections over the HAProxy processes by a hash,
    # not evenly: a tenth of headroom keeps each under its maxconn, past which
    # HAProxy stops accepting and the rest wait in the accept queue.
    args.balancers = args.balancers or math.ceil(args.connections / (0.9 * PER_BALANCER))
    if not load_generator_ready():
        return 2
    if not (shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")):
        print("haproxy (Debian's haproxy package) is missing", file=sys.stderr)
        return 2
    result = run(args)
    print(f"wrote {write_json(args.out, result)}")
    return 0 if result["timeouts"] == 0 and result["closed_at_clients"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
