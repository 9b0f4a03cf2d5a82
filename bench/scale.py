"""
Every connection a process can hold, on schedule: ``twistd wskeepalive`` with
tens of thousands of keepalive connections for minutes, the ping lateness
measured inside the server, false timeouts, CPU and memory (issue 9, §2 and
§3).

The server is the real ``twistd -n wskeepalive`` with ``--metrics``, read
every few seconds: ping lateness (a histogram of how long after its due time
each Ping left), heartbeat timeouts, open connections, reactor lag and the
garbage collector's pauses.  CPU and RSS come from /proc.  The load comes
from several Node processes (bench/load.mjs), each with its own loopback
source address (127.0.0.2, 127.0.0.3, ...): a process holds at most ~19,900
sockets (hard open-file limit 20,000), and each source address has its own
ephemeral port range.

Run from the repository root, after ``npm ci --prefix bench``::

    python bench/scale.py                # 19,800 conns; 5 s and 20 s; --gc python and scheduled
    python bench/scale.py --workers 3 --connections 51000 --intervals 20 --gc scheduled
    python bench/scale.py --smoke        # 60 connections, a few seconds (CI)

Each run holds every connection for ``--hold`` seconds (120) after all of
them have seen a Ping; the figures are over that window.  Compare ratios and
distributions, not absolute times: the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _metrics import (
    Scrape,
    difference,
    format_bound,
    quantile_bound,
    scrape,
    share_within,
    top_bound,
)
from _procs import (
    CLOCK_TICK,
    ROOT,
    LoadGenerator,
    children,
    cpu_seconds,
    free_port,
    load_generator_ready,
    machine_busy,
    node_version,
    rss_kib,
)
from _report import environment, format_table, write_json

BENCH = Path(__file__).resolve().parent
TWISTD = Path(sys.executable).parent / "twistd"

#: Lateness target of issue 9: p99 at most 50 ms.
TARGET_LATENESS = 0.05

#: The most sockets one load generator holds: under the 20,000 open files a
#: process may have, with room for Node's own.
MAX_PER_LOADER = 19_000

#: Seconds after the server is ready before its idle RSS is read: long
#: enough for ``--gc scheduled``'s first freeze.
GC_SETTLE = 2.5


@dataclass
class Process:
    """Figures of one server process (the only one, or one worker) over the hold window."""

    name: str
    pid: int = 0
    connections: float = 0.0
    pings: float = 0.0
    lateness: dict[str, float] = field(default_factory=dict)  # bucket bound -> count
    lateness_p50: float | None = None
    lateness_p99: float | None = None
    lateness_top: float | None = None
    within_target: float | None = None  # share of Pings at most 50 ms late
    timeouts: float = 0.0
    full_collections: float = 0.0
    full_collection_top: float | None = None
    gc_seconds: float = 0.0
    # By generation ("0", "1", "2"): passes, and seconds in them.
    gc_passes: dict[str, float] = field(default_factory=dict)
    gc_seconds_by_generation: dict[str, float] = field(default_factory=dict)
    scheduled_collections: float = 0.0
    reactor_lag_max: float = 0.0
    cpu_percent: float = 0.0
    rss_mib: float = 0.0
    rss_idle_mib: float = 0.0


@dataclass
class Run:
    interval: float
    timeout: float
    gc: str
    workers: int
    connections: int
    protocol: str | None = None
    churn: float = 0.0  # connections closed and replaced per second
    failed: str | None = None
    opened: int = 0
    open_failures: int = 0
    open_errors: dict[str, int] = field(default_factory=dict)
    ramp_s: float = 0.0  # from the first connect to every connection open
    hold_s: float = 0.0
    client_pings: int = 0
    client_closed: int = 0  # connections the server closed during the run
    churned: int = 0  # connections the clients closed and replaced (--churn)
    client_close_codes: dict[str, int] = field(default_factory=dict)
    gap_p99_s: float | None = None  # between Pings as the clients saw them
    gap_max_s: float | None = None
    total: Process = field(default_factory=lambda: Process("all"))
    per_worker: list[Process] = field(default_factory=list)
    loaders_cpu_percent: float = 0.0
    others_cpu_percent: float = 0.0  # the rest of the machine (shared!)
    stop_s: float = 0.0  # SIGTERM to exit
    exit_status: int | None = None
    shutdown_close_codes: dict[str, int] = field(default_factory=dict)
    server_log: str = ""
    # CPU seconds from the first connect to the last open: "parent" (twistd),
    # "workers" (all of them), "loaders".
    open_cpu_s: dict[str, float] = field(default_factory=dict)
    parent_cpu_percent: float = 0.0  # twistd itself over the hold (with --workers)
    # Over the hold, % of one core, the whole machine: user, system, softirq...
    machine_cpu_percent: dict[str, float] = field(default_factory=dict)
    loaders_rss_mib: float = 0.0
    sockstat: dict[str, int] = field(default_factory=dict)  # /proc/net/sockstat TCP line
    notes: list[str] = field(default_factory=list)


# -- the server ------------------------------------------------------------------


class Server:
    """``twistd -n wskeepalive`` with ``--metrics``, its log in a file."""

    def __init__(
        self,
        args: argparse.Namespace,
        interval: float,
        timeout: float,
        gc: str,
        tag: str | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        tag = tag or f"{interval:g}-{gc}"
        # Tens of thousands of lines: beside the system's temporary files,
        # not the results.
        self.log = (
            Path(tempfile.gettempdir()) / "wskeepalive-bench" / f"{Path(args.out).stem}-{tag}.log"
        )
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # twistd finds the plugin by scanning sys.path for twisted/plugins.
        # bench/ too, for --protocol protocols.NAME.
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), str(BENCH), env.get("PYTHONPATH")])
        )
        command = [
            str(TWISTD),
            "-n",
            "--pidfile=",
            # On stdout, into self.log: twistd's own log files rotate at 1 MB.
            "--logfile=-",
            "wskeepalive",
            "--listen",
            f"tcp:{self.port}:interface=127.0.0.1",
            "--metrics",
            f"tcp:{self.metrics_port}:interface=127.0.0.1",
            "--ping-interval",
            f"{interval:g}",
            "--ping-timeout",
            f"{timeout:g}",
            "--gc",
            gc,
        ]
        if args.workers > 1:
            command += ["--workers", str(args.workers)]
        if args.protocol:
            command += ["--protocol", args.protocol]
        command += extra
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.PIPE,
                text=True,
                cwd=self.log.parent,
            )
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"

    def wait_ready(self, workers: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                assert self.process.stderr is not None
                raise RuntimeError(f"twistd exited: {self.process.stderr.read()[-2000:]}")
            with contextlib.suppress(OSError):
                metrics = scrape(self.metrics_url, timeout=2)
                ready = workers == 1 or len(metrics.label_values("worker_pid", "worker")) >= workers
                if ready and _accepts(self.port):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"twistd not serving within {timeout} s; see {self.log}")
            time.sleep(0.2)

    def pids(self, metrics: Scrape, workers: int) -> dict[str, int]:
        """Server process by worker label ("" for a single process)."""
        if workers == 1:
            return {"": self.process.pid}
        return {
            worker: int(metrics.value("worker_pid", worker=worker))
            for worker in metrics.label_values("worker_pid", "worker")
        }

    def stop(self, timeout: float) -> tuple[int | None, float]:
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            status = None
        return status, time.monotonic() - started


def _accepts(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


# -- one run -------------------------------------------------------------------------


def loader_plan(connections: int, per_loader: int) -> list[int]:
    """How many connections each load generator opens: as even as possible."""
    loaders = max(1, math.ceil(connections / per_loader))
    base, extra = divmod(connections, loaders)
    return [base + (1 if i < extra else 0) for i in range(loaders)]


#: Starts the load generators of a run: (args, the server's URL, connections
#: per generator) -> the generators.
StartLoaders = Callable[[argparse.Namespace, str, list[int]], list[LoadGenerator]]


def node_loaders(args: argparse.Namespace, url: str, plan: list[int]) -> list[LoadGenerator]:
    """bench/load.mjs processes, each from its own 127.0.0.x."""
    loaders = []
    for i, count in enumerate(plan):
        options: dict[str, object] = {"local-address": f"127.0.0.{2 + i}", "gaps": 1}
        if args.churn:
            options["churn"] = args.churn / len(plan)
        loaders.append(LoadGenerator(args.node, url, count, args.concurrency, options))
    return loaders


def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid`` and of its children (the workers of twistd)."""
    own = cpu_seconds(pid)
    theirs = 0.0
    for child in children(pid):
        with contextlib.suppress(OSError):
            theirs += cpu_seconds(child)
    return own, theirs


def machine_fields() -> list[float]:
    """/proc/stat's first line, seconds: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        return [int(v) / CLOCK_TICK for v in f.readline().split()[1:9]]


def sockstat() -> dict[str, int]:
    """The TCP line of /proc/net/sockstat: inuse, orphan, tw, alloc, mem (pages)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            words = line.split()[1:]
            return {k: int(v) for k, v in zip(words[::2], words[1::2], strict=True)}
    return {}


def measure(
    args: argparse.Namespace, interval: float, gc: str, start_loaders: StartLoaders = node_loaders
) -> Run:
    timeout = args.timeout or interval
    run = Run(interval, timeout, gc, args.workers, args.connections, args.protocol, args.churn)
    server = Server(args, interval, timeout, gc, extra=getattr(args, "server_extra", ()))
    run.server_log = str(server.log)
    loaders: list[LoadGenerator] = []
    try:
        server.wait_ready(args.workers, timeout=30 + 3 * args.workers)
        time.sleep(GC_SETTLE)
        idle = scrape(server.metrics_url)
        idle_rss = {w: rss_kib(pid) for w, pid in server.pids(idle, args.workers).items()}

        started = time.monotonic()
        parent_cpu0, workers_cpu0 = tree_cpu(server.process.pid)
        loaders = start_loaders(args, server.url, loader_plan(args.connections, args.per_loader))
        for loader in loaders:
            opened = loader.wait_for("open", 60 + args.connections / 200)
            run.opened += opened["opened"]
            run.open_failures += opened["failed"]
            for code, n in opened["errors"].items():
                run.open_errors[code] = run.open_errors.get(code, 0) + n
        run.ramp_s = time.monotonic() - started
        parent_cpu1, workers_cpu1 = tree_cpu(server.process.pid)
        run.open_cpu_s = {
            "parent": parent_cpu1 - parent_cpu0,
            "workers": workers_cpu1 - workers_cpu0 if args.workers > 1 else 0.0,
            "loaders": sum(cpu_seconds(loader.process.pid) for loader in loaders),
        }
        if run.open_failures:
            run.notes.append(f"{run.open_failures} connections failed to open: {run.open_errors}")

        # Every connection has seen its first Ping (the first interval is
        # spread at random): the keepalive is in its steady state.
        deadline = time.monotonic() + 2 * interval + 30
        while sum(loader.counts()["pinged"] for loader in loaders) < run.opened:
            if time.monotonic() > deadline:
                run.notes.append("not every connection saw a Ping before the window")
                break
            time.sleep(0.5)

        before = scrape(server.metrics_url)
        pids = server.pids(before, args.workers)
        clients_before = [loader.counts() for loader in loaders]
        cpu_before = {w: cpu_seconds(pid) for w, pid in pids.items()}
        loaders_cpu_before = sum(cpu_seconds(loader.process.pid) for loader in loaders)
        busy_before, total_before = machine_busy()
        fields_before = machine_fields()
        parent_before = cpu_seconds(server.process.pid)
        t0 = time.monotonic()
        lag_max: dict[str, float] = {}
        while time.monotonic() - t0 < args.hold:
            time.sleep(min(args.scrape_every, max(0.0, args.hold - (time.monotonic() - t0))))
            sample = scrape(server.metrics_url)
            for worker in pids:
                labels = {"worker": worker} if worker else {}
                lag = sample.value("reactor_lag_max_seconds", **labels)
                lag_max[worker] = max(lag_max.get(worker, 0.0), lag)
        after = scrape(server.metrics_url)
        run.hold_s = time.monotonic() - t0
        cpu_after = {w: cpu_seconds(pid) for w, pid in pids.items()}
        loaders_cpu = sum(cpu_seconds(loader.process.pid) for loader in loaders)
        busy_after, total_after = machine_busy()
        fields_after = machine_fields()
        parent_after = cpu_seconds(server.process.pid)
        clients_after = [loader.counts() for loader in loaders]
        names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
        run.machine_cpu_percent = {
            name: 100 * (after_s - before_s) / run.hold_s
            for name, before_s, after_s in zip(names, fields_before, fields_after, strict=True)
        }
        if args.workers > 1:
            run.parent_cpu_percent = 100 * (parent_after - parent_before) / run.hold_s
        run.loaders_rss_mib = sum(rss_kib(loader.process.pid) for loader in loaders) / 1024
        run.sockstat = sockstat()

        for worker, pid in pids.items():
            figures = process_figures(
                f"worker {worker}" if worker else "server",
                pid,
                {"worker": worker} if worker else {},
                before,
                after,
                run.hold_s,
            )
            figures.cpu_percent = 100 * (cpu_after[worker] - cpu_before[worker]) / run.hold_s
            figures.rss_mib = rss_kib(pid) / 1024
            figures.rss_idle_mib = idle_rss.get(worker, 0) / 1024
            figures.reactor_lag_max = lag_max.get(worker, 0.0)
            run.per_worker.append(figures)
        run.total = combine(run.per_worker, before, after)
        server_cpu = sum(p.cpu_percent for p in run.per_worker)
        run.loaders_cpu_percent = 100 * (loaders_cpu - loaders_cpu_before) / run.hold_s
        cores = os.cpu_count() or 1
        machine = 100 * cores * (busy_after - busy_before) / max(1e-9, total_after - total_before)
        run.others_cpu_percent = max(0.0, machine - server_cpu - run.loaders_cpu_percent)

        client_totals(run, clients_before, clients_after)

        # Shutdown: every connection should get 1001 "going away".
        # The drain's own bound: the spread, the close timeout, and the 5 s
        # the parent waits before it kills its workers.
        drain = getattr(args, "drain_spread", 5.0) + args.close_timeout + 5
        run.exit_status, run.stop_s = server.stop(timeout=drain + 55)
        time.sleep(1)
        for loader in loaders:
            counts = loader.counts()
            for code, n in counts["closeCodes"].items():
                run.shutdown_close_codes[code] = run.shutdown_close_codes.get(code, 0) + n
        for code, n in run.client_close_codes.items():
            run.shutdown_close_codes[code] -= n
        run.shutdown_close_codes = {c: n for c, n in run.shutdown_close_codes.items() if n}
        return run
    except Exception as e:
        run.failed = f"{type(e).__name__}: {e}"
        run.notes.append(run.failed)
        return run
    finally:
        for loader in loaders:
            loader.close()
        server.stop(timeout=10)


def process_figures(
    name: str, pid: int, labels: dict[str, str], before: Scrape, after: Scrape, hold: float
) -> Process:
    figures = Process(name, pid)
    figures.connections = after.value("connections_open", **labels)
    figures.pings = after.value("pings_sent_total", **labels) - before.value(
        "pings_sent_total", **labels
    )
    lateness = difference(
        after.histogram("ping_lateness_seconds", **labels),
        before.histogram("ping_lateness_seconds", **labels),
    )
    fill_lateness(figures, lateness)
    figures.timeouts = after.value("heartbeat_timeouts_total", **labels)
    full = difference(
        after.histogram("gc_pause_seconds", generation="2", **labels),
        before.histogram("gc_pause_seconds", generation="2", **labels),
    )
    figures.full_collections = full.get(math.inf, 0.0)
    figures.full_collection_top = top_bound(full)
    figures.gc_seconds = after.value("gc_pause_seconds_sum", **labels) - before.value(
        "gc_pause_seconds_sum", **labels
    )
    for generation in "012":
        figures.gc_passes[generation] = after.value(
            "gc_pause_seconds_count", generation=generation, **labels
        ) - before.value("gc_pause_seconds_count", generation=generation, **labels)
        figures.gc_seconds_by_generation[generation] = after.value(
            "gc_pause_seconds_sum", generation=generation, **labels
        ) - before.value("gc_pause_seconds_sum", generation=generation, **labels)
    figures.scheduled_collections = after.value(
        "gc_scheduled_collections_total", **labels
    ) - before.value("gc_scheduled_collections_total", **labels)
    return figures


def fill_lateness(figures: Process, lateness: dict[float, float]) -> None:
    figures.lateness = {repr(bound): count for bound, count in lateness.items()}
    figures.lateness_p50 = quantile_bound(lateness, 0.5)
    figures.lateness_p99 = quantile_bound(lateness, 0.99)
    figures.lateness_top = top_bound(lateness)
    figures.within_target = share_within(lateness, TARGET_LATENESS)


def combine(workers: list[Process], before: Scrape, after: Scrape) -> Process:
    if len(workers) == 1:
        return workers[0]
    total = Process("all")
    for generation in "012":
        total.gc_passes[generation] = sum(w.gc_passes.get(generation, 0) for w in workers)
        total.gc_seconds_by_generation[generation] = sum(
            w.gc_seconds_by_generation.get(generation, 0) for w in workers
        )
    for attribute in (
        "connections",
        "pings",
        "timeouts",
        "full_collections",
        "gc_seconds",
        "scheduled_collections",
        "cpu_percent",
        "rss_mib",
        "rss_idle_mib",
    ):
        setattr(total, attribute, sum(getattr(w, attribute) for w in workers))
    total.reactor_lag_max = max(w.reactor_lag_max for w in workers)
    tops = [w.full_collection_top for w in workers if w.full_collection_top is not None]
    total.full_collection_top = max(tops) if tops else None
    fill_lateness(
        total,
        difference(
            after.histogram("ping_lateness_seconds"), before.histogram("ping_lateness_seconds")
        ),
    )
    return total


def client_totals(run: Run, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    gaps: dict[int, int] = {}
    for start, end in zip(before, after, strict=True):
        run.client_pings += end["pings"] - start["pings"]
        run.client_closed += end["closed"]
        run.churned += end["churned"] - start["churned"]
        for code, n in end["closeCodes"].items():
            run.client_close_codes[code] = run.client_close_codes.get(code, 0) + n
        for step, n in end["gaps"].items():
            delta = n - start["gaps"].get(step, 0)
            if delta:
                gaps[int(step)] = gaps.get(int(step), 0) + delta
    if gaps:
        steps = sorted(gaps)
        total = sum(gaps.values())
        cumulative = 0
        for step in steps:
            cumulative += gaps[step]
            if cumulative >= 0.99 * total:
                run.gap_p99_s = step / 100
                break
        run.gap_max_s = steps[-1] / 100


# -- report ------------------------------------------------------------------------------


def run_name(run: Run) -> str:
    name = f"{run.interval:g}s/{run.timeout:g}s gc={run.gc}"
    if run.protocol:
        name += f" {run.protocol.rsplit('.', 1)[-1]}"
    if run.churn:
        name += f" churn {run.churn:g}/s"
    return name


def table(runs: list[Run]) -> str:
    header = (
        "run",
        "conns",
        "pings/s",
        "late p50",
        "late p99",
        "late max",
        "<=50ms %",
        "timeouts",
        "closed",
        "gap p99",
        "full GCs",
        "full GC max",
        "GC s",
        "lag max",
        "CPU %",
        "RSS MiB",
        "KiB/conn",
    )
    rows = [header]
    for run in runs:
        name = run_name(run)
        if run.failed:
            rows.append((name, "FAILED: " + run.failed[:60], *[""] * (len(header) - 2)))
            continue
        processes = [run.total] if run.workers == 1 else [run.total, *run.per_worker]
        for process in processes:
            label = name if process is run.total else f"  {process.name} (pid {process.pid})"
            closed = str(run.client_closed) if process is run.total else ""
            gap = f"{run.gap_p99_s:.2f}s" if process is run.total and run.gap_p99_s else ""
            rows.append(
                (
                    label,
                    f"{process.connections:.0f}",
                    f"{process.pings / run.hold_s:.0f}",
                    format_bound(process.lateness_p50),
                    format_bound(process.lateness_p99, _bounds(process)),
                    format_bound(process.lateness_top, _bounds(process)),
                    "-" if process.within_target is None else f"{100 * process.within_target:.2f}",
                    f"{process.timeouts:.0f}",
                    closed,
                    gap,
                    f"{process.full_collections:.0f}",
                    format_bound(process.full_collection_top),
                    f"{process.gc_seconds:.2f}",
                    f"{process.reactor_lag_max * 1000:.0f}ms",
                    f"{process.cpu_percent:.0f}",
                    f"{process.rss_mib:.0f}",
                    _kib_per_connection(process),
                )
            )
    lines = format_table(rows)
    for run in runs:
        name = run_name(run)
        churned = f", {run.churned} closed and replaced by the clients" if run.churn else ""
        lines.append(
            f"{name}: opened {run.opened}/{run.connections} in {run.ramp_s:.1f} s, "
            f"held {run.hold_s:.0f} s{churned}; clients saw {run.client_pings} pings, "
            f"gap max {run.gap_max_s}s; loaders {run.loaders_cpu_percent:.0f}% CPU, "
            f"rest of the machine {run.others_cpu_percent:.0f}%; SIGTERM -> exit "
            f"{run.exit_status} in {run.stop_s:.1f} s, close codes {run.shutdown_close_codes}"
        )
        if not run.failed:
            passes = run.total.gc_passes
            spent = run.total.gc_seconds_by_generation
            lines.append(
                "  GC passes (seconds) by generation: "
                + ", ".join(f"{g}: {passes.get(g, 0):.0f} ({spent.get(g, 0):.2f} s)" for g in "012")
                + f"; scheduled full collections {run.total.scheduled_collections:.0f}"
            )
        lines.extend(f"  note: {note}" for note in run.notes)
    return "\n".join(lines)


def _bounds(process: Process) -> dict[float, float]:
    return {float(bound): count for bound, count in process.lateness.items()}


def _kib_per_connection(process: Process) -> str:
    if not process.connections:
        return "-"
    return f"{(process.rss_mib - process.rss_idle_mib) * 1024 / process.connections:.1f}"


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--connections", type=int, default=None, help="default 19800 (60 with --smoke)"
    )
    parser.add_argument(
        "--intervals",
        default=None,
        help="comma-separated ping intervals, s (default 5,20; 1 with --smoke)",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="ping timeout, s (default: the interval)"
    )
    parser.add_argument(
        "--gc",
        default=None,
        help="comma-separated --gc policies (default python,scheduled; scheduled with --smoke)",
    )
    parser.add_argument("--workers", type=int, default=1, help="twistd --workers (default 1)")
    parser.add_argument(
        "--churn",
        type=float,
        default=0.0,
        help="connections the clients close and replace per second, once all are open (default 0)",
    )
    parser.add_argument(
        "--protocol",
        default=None,
        help="twistd --protocol, e.g. protocols.TimerFix (bench/protocols.py); default: echo",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=None,
        help="s to hold every connection once all have seen a Ping (default 120; 3 with --smoke)",
    )
    parser.add_argument(
        "--per-loader",
        type=int,
        default=None,
        help="most connections per load generator, each from its own 127.0.0.x "
        "(default 4950; 30 with --smoke)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="handshakes in flight per load generator"
    )
    parser.add_argument("--scrape-every", type=float, default=5.0, help="s between scrapes")
    parser.add_argument("--close-timeout", type=float, default=10.0)
    parser.add_argument("--out", default=str(BENCH / "results" / "scale.json"))
    parser.add_argument("--node", default=shutil.which("node") or "node")
    parser.add_argument(
        "--smoke", action="store_true", help="a few connections for a few seconds (CI)"
    )
    args = parser.parse_args(argv)
    if args.connections is None:
        args.connections = 60 if args.smoke else 19_800
    if args.intervals is None:
        args.intervals = "1" if args.smoke else "5,20"
    if args.gc is None:
        args.gc = "scheduled" if args.smoke else "python,scheduled"
    if args.hold is None:
        args.hold = 3.0 if args.smoke else 120.0
    if args.per_loader is None:
        args.per_loader = 30 if args.smoke else 4950
    if args.smoke:
        args.scrape_every = min(args.scrape_every, 1.0)
    if not 1 <= args.per_loader <= MAX_PER_LOADER:
        parser.error(f"--per-loader must be 1 to {MAX_PER_LOADER}, not {args.per_loader}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    args.intervals = [float(v) for v in args.intervals.split(",") if v]
    args.gc = [v for v in args.gc.split(",") if v]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not load_generator_ready():
        return 2
    runs = []
    for interval, gc in itertools.product(args.intervals, args.gc):
        print(f"[{interval:g}s gc={gc}] ...", file=sys.stderr, flush=True)
        run = measure(args, interval, gc)
        print(
            f"[{interval:g}s gc={gc}] "
            + (run.failed or f"p99 {format_bound(run.total.lateness_p99)}"),
            file=sys.stderr,
            flush=True,
        )
        runs.append(run)
    print(table(runs))
    env = environment(("twisted", "autobahn", "txaio", "prometheus_client"))
    env["node"] = node_version(args.node)
    env["loadavg"] = Path("/proc/loadavg").read_text().strip()
    out = write_json(
        args.out,
        {
            "benchmark": "scale",
            "settings": vars(args),
            "environment": env,
            "runs": [asdict(run) for run in runs],
        },
    )
    print(f"wrote {out}")
    return 1 if any(run.failed for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
