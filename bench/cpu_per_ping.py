"""
Server CPU per keepalive Ping, and server memory per connection, side by side.

Each server in bench/servers/ runs in turn, in its own process, under the same
load: N connections from one Node ``ws`` process (bench/load.mjs), which
answers every Ping and counts the Pings it sees.  Once every connection is
open and has seen its first Ping, and a warm-up has passed, the server's CPU
time (utime + stime from /proc/PID/stat) is taken over a fixed window and
divided by the Pings the clients saw in that window, after subtracting what
the no-ping ``baseline`` server spends per second holding the same idle
connections:

    us/ping = (cpu - baseline_cpu_per_second * window) / pings

Memory: VmRSS (/proc/PID/status) once every connection is open, minus VmRSS
before the first connection, divided by N.

Run from the repository root, after ``npm ci --prefix bench``::

    python bench/cpu_per_ping.py                 # N=4000, 1 s interval, 10 s window
    python bench/cpu_per_ping.py --smoke         # ~50 connections, a 2 s window (CI)

Compare ratios within one run, never absolute figures across runs or machines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _procs import (
    LoadGenerator,
    cpu_seconds,
    free_port,
    load_generator_ready,
    node_version,
    rss_kib,
    schedstat_seconds,
    voluntary_switches,
)
from _report import environment, format_table, write_json

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVERS_DIR = BENCH / "servers"
SKIP_STATUS = 3  # as in servers/_common.py

#: name -> (script in bench/servers/, kind).  "baseline" sends no pings;
#: "reference" rows are our yardsticks; "peer" rows are other libraries'
#: keepalives, the best of which "ours" is compared with.
SERVERS: dict[str, tuple[str, str]] = {
    "baseline": ("baseline.py", "baseline"),
    "floor": ("floor.py", "reference"),
    "limit": ("limit.py", "reference"),
    "autobahn": ("autobahn_autoping.py", "peer"),
    "websockets": ("websockets_serve.py", "peer"),
    "aiohttp": ("aiohttp_heartbeat.py", "peer"),
    "tornado": ("tornado_ping.py", "peer"),
    "ours": ("ours.py", "ours"),
    # Twisted's own framing (twisted.web.websocket on wsproto).
    "twisted-floor": ("twisted_floor.py", "reference"),
    "twisted-ours": ("twisted_ours.py", "ours"),
    # Over TLS (Twisted's TLSMemoryBIOProtocol, as an ssl: endpoint has it;
    # the standard library's ssl for websockets), certificate made for the run.
    "floor-tls": ("floor.py", "reference"),
    "ours-tls": ("ours.py", "ours"),
    "websockets-tls": ("websockets_serve.py", "peer"),
}


def is_tls(name: str) -> bool:
    """
    Whether the row ``name`` is served over TLS (so is any ``--candidate``
    whose name ends in ``-tls``): such rows are compared with the TLS floor
    and the best TLS peer, not with the plain rows.
    """
    return name.endswith("-tls")


#: The floor each row's ``ratio_to_floor`` is taken against (default:
#: Autobahn's ``floor``): ours on Twisted's framing against that framing's
#: own floor; Twisted's floor against Autobahn's, the framings side by side.
FLOOR_OF = {"twisted-ours": "twisted-floor"}


@dataclass
class Result:
    server: str
    kind: str
    skipped: str | None = None  # the server's library is not installed
    failed: str | None = None  # the server or the load generator broke
    connections_opened: int = 0
    connections_failed: int = 0
    connections_closed_by_server: int = 0
    ready_s: float = 0.0  # from start to every connection having seen a ping
    window_s: float = 0.0
    pings: int = 0
    cpu_s: float = 0.0  # utime + stime over the window, /proc/PID/stat
    cpu_s_schedstat: float = 0.0  # the same from /proc/PID/schedstat (ns resolution)
    # Voluntary context switches over the window: how often the server
    # slept and woke (epoll_wait), i.e. how well its work is batched.
    wakeups: int = 0
    rss_before_kib: int = 0
    rss_open_kib: int = 0
    rss_end_kib: int = 0
    # Filled in once the baseline is known.
    us_per_ping_above_baseline: float | None = None
    us_per_ping_above_baseline_schedstat: float | None = None
    ratio_to_floor: float | None = None
    ratio_to_best_peer: float | None = None
    kib_per_connection: float | None = None
    kib_per_connection_end: float | None = None
    notes: list[str] = field(default_factory=list)


# -- the processes -----------------------------------------------------------


def start_server(
    script: Path, port: int, args: argparse.Namespace, tls: bool = False
) -> subprocess.Popen[str]:
    env = dict(os.environ)
    # Always the library in this checkout, installed or not; and the servers'
    # shared modules for candidate scripts that live elsewhere.
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), str(SERVERS_DIR), env.get("PYTHONPATH")])
    )
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            "--port",
            str(port),
            "--interval",
            str(args.interval),
            "--timeout",
            str(args.timeout),
            "--backlog",
            str(args.backlog),
            *(["--cert", str(args.cert), "--key", str(args.key)] if tls else []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_ready(server: subprocess.Popen[str], timeout: float) -> str | None:
    """None once the server listens; the reason if it skipped itself."""
    assert server.stdout is not None
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            found.put(line.strip())
        found.put("")

    threading.Thread(target=read, daemon=True).start()
    try:
        line = found.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"server not ready within {timeout} s") from None
    if line == "READY":
        return None
    if line.startswith("SKIP"):
        return line[5:]
    server.wait()
    assert server.stderr is not None
    raise RuntimeError(f"server failed to start: {line!r}\n{server.stderr.read()[-2000:]}")


def stop(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=3)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# -- one measurement ----------------------------------------------------------


def measure(name: str, script: Path, kind: str, args: argparse.Namespace) -> Result:
    result = Result(server=name, kind=kind)
    port = free_port()
    started = time.monotonic()
    tls = is_tls(name)
    server = start_server(script, port, args, tls)
    load: LoadGenerator | None = None
    profiler: subprocess.Popen[bytes] | None = None
    try:
        skipped = wait_ready(server, 30)
        if skipped is not None:
            result.skipped = skipped
            return result
        pid = server.pid
        time.sleep(0.5)
        result.rss_before_kib = rss_kib(pid)

        load = LoadGenerator(
            args.node,
            f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/",
            args.connections,
            args.concurrency,
            {"insecure": 1} if tls else None,
        )
        opened = load.wait_for("open", 30 + args.connections / 100)
        result.connections_opened = opened["opened"]
        result.connections_failed = opened["failed"]
        time.sleep(0.3)
        result.rss_open_kib = rss_kib(pid)

        if kind != "baseline":
            # Every connection has seen its first Ping: the keepalive is in
            # its steady state (and Autobahn's batched timers have snapped).
            deadline = time.monotonic() + 3 * args.interval + 10
            while True:
                counts = load.counts()
                if counts["pinged"] >= counts["opened"]:
                    break
                if time.monotonic() > deadline:
                    result.notes.append(
                        f"only {counts['pinged']} of {counts['opened']} connections "
                        "saw a ping before the window"
                    )
                    break
                time.sleep(0.1)
        result.ready_s = time.monotonic() - started
        time.sleep(args.warmup)

        if name in args.py_spy:
            profiler = start_profiler(name, pid, args)

        t0 = time.monotonic()
        cpu0, sched0, woke0 = cpu_seconds(pid), schedstat_seconds(pid), voluntary_switches(pid)
        before = load.counts()
        time.sleep(args.window)
        cpu1, sched1, woke1 = cpu_seconds(pid), schedstat_seconds(pid), voluntary_switches(pid)
        after = load.counts()
        t1 = time.monotonic()

        result.window_s = t1 - t0
        result.cpu_s = cpu1 - cpu0
        result.cpu_s_schedstat = sched1 - sched0
        result.wakeups = woke1 - woke0
        result.pings = after["pings"] - before["pings"]
        result.connections_closed_by_server = after["closed"]
        result.rss_end_kib = rss_kib(pid)
        if profiler is not None:
            result.notes.append("profiled with py-spy during the window: CPU figures inflated")
        return result
    finally:
        if profiler is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(timeout=30)
        if load is not None:
            load.close()
        stop(server)


def start_profiler(name: str, pid: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    out = Path(args.out).parent / f"py-spy-{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    beside = Path(sys.executable).parent / "py-spy"
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(args.window)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -- figures --------------------------------------------------------------------


def derive(results: list[Result]) -> None:
    by_name = {r.server: r for r in results if r.skipped is None and r.failed is None}
    baseline = by_name.get("baseline")
    base_rate = baseline.cpu_s / baseline.window_s if baseline and baseline.window_s else 0.0
    base_sched = (
        baseline.cpu_s_schedstat / baseline.window_s if baseline and baseline.window_s else 0.0
    )
    for r in by_name.values():
        if r.connections_opened:
            r.kib_per_connection = (r.rss_open_kib - r.rss_before_kib) / r.connections_opened
            r.kib_per_connection_end = (r.rss_end_kib - r.rss_before_kib) / r.connections_opened
        if r.kind != "baseline" and r.pings:
            r.us_per_ping_above_baseline = (r.cpu_s - base_rate * r.window_s) / r.pings * 1e6
            r.us_per_ping_above_baseline_schedstat = (
                (r.cpu_s_schedstat - base_sched * r.window_s) / r.pings * 1e6
            )

    def floor_us_of(name: str) -> float | None:
        default = "floor-tls" if is_tls(name) and name != "floor-tls" else "floor"
        floor = by_name.get(FLOOR_OF.get(name, default))
        return floor.us_per_ping_above_baseline if floor else None

    def best_peer_of(name: str) -> float | None:
        # TLS rows against the best TLS peer, the others against plain ones.
        peers = [
            r.us_per_ping_above_baseline
            for r in by_name.values()
            if r.kind == "peer"
            and r.us_per_ping_above_baseline
            and is_tls(r.server) == is_tls(name)
        ]
        return min(peers) if peers else None

    for r in by_name.values():
        us = r.us_per_ping_above_baseline
        if us is None:
            continue
        floor_us = floor_us_of(r.server)
        if floor_us and floor_us > 0:
            r.ratio_to_floor = us / floor_us
        best_peer = best_peer_of(r.server)
        if best_peer and best_peer > 0:
            r.ratio_to_best_peer = us / best_peer


def table(results: list[Result], args: argparse.Namespace) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    header = (
        "server",
        "pings seen",
        "CPU s",
        "us/ping>base",
        "x floor",
        "x best peer",
        "KiB/conn",
        "KiB/conn end",
        "wakeups/s",
        "closed",
    )
    rows = [header]
    for r in results:
        if r.skipped is not None or r.failed is not None:
            why = f"skipped: {r.skipped}" if r.failed is None else "FAILED (see notes)"
            rows.append((r.server, why, *[""] * (len(header) - 2)))
            continue
        rows.append(
            (
                r.server,
                str(r.pings),
                f"{r.cpu_s:.2f}",
                num(r.us_per_ping_above_baseline, ".1f"),
                num(r.ratio_to_floor, ".2f"),
                num(r.ratio_to_best_peer, ".2f"),
                num(r.kib_per_connection, ".1f"),
                num(r.kib_per_connection_end, ".1f"),
                f"{r.wakeups / r.window_s:.0f}" if r.window_s else "-",
                str(r.connections_closed_by_server),
            )
        )
    lines = [
        f"N={args.connections} connections, ping interval {args.interval} s, "
        f"window {args.window} s; CPU from /proc/PID/stat, us/ping above the no-ping baseline",
        *format_table(rows),
    ]
    notes = [f"  {r.server}: {note}" for r in results for note in r.notes]
    if notes:
        lines.append("notes:")
        lines.extend(notes)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--connections", type=int, default=None, help="default 4000 (50 with --smoke)"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="ping interval, s (default 1)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="pong timeout, s, where a server has one (default: the interval)",
    )
    parser.add_argument(
        "--window", type=float, default=None, help="measured window, s (default 10; 2 with --smoke)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="s after every connection saw its first ping (default 3; 0.5 with --smoke)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated subset of {','.join(SERVERS)}; baseline is always run",
    )
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="NAME=SCRIPT",
        help="also measure SCRIPT (same command line as bench/servers/*.py; may import "
        "_autobahn and _common) as NAME, after the others: for A/B runs of a library change",
    )
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument(
        "--concurrency", type=int, default=256, help="handshakes in flight while connecting"
    )
    parser.add_argument("--out", default=str(BENCH / "results" / "cpu_per_ping.json"))
    parser.add_argument("--node", default=shutil.which("node") or "node")
    parser.add_argument(
        "--py-spy",
        default="",
        metavar="SERVERS",
        help="comma-separated servers to profile with py-spy during the window "
        "(raw stacks beside --out; inflates their CPU figures)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few connections and a short window: proves the script runs (CI)",
    )
    args = parser.parse_args(argv)
    if args.connections is None:
        args.connections = 50 if args.smoke else 4000
    if args.window is None:
        args.window = 2.0 if args.smoke else 10.0
    if args.warmup is None:
        args.warmup = 0.5 if args.smoke else 3.0
    if args.timeout is None:
        args.timeout = args.interval
    names = [n for n in args.servers.split(",") if n]
    unknown = set(names) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; expected some of {', '.join(SERVERS)}")
    plan = [(n, SERVERS_DIR / SERVERS[n][0], SERVERS[n][1]) for n in ["baseline", *names]]
    for candidate in args.candidate:
        name, _, script = candidate.partition("=")
        if not name or not script or not Path(script).is_file():
            parser.error(
                f"--candidate wants NAME=SCRIPT with an existing script, not {candidate!r}"
            )
        plan.append((name, Path(script).resolve(), "candidate"))
    args.servers = list(dict.fromkeys(name for name, _, _ in plan))
    args.plan = list({name: (name, script, kind) for name, script, kind in plan}.values())
    args.py_spy = {n for n in args.py_spy.split(",") if n}
    args.cert = args.key = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not load_generator_ready():
        return 2
    results = []
    if any(is_tls(name) for name in args.servers):
        from _tls import self_signed

        args.cert, args.key = self_signed(Path(tempfile.mkdtemp(prefix="cpu-per-ping-tls-")))
    for name, script, kind in args.plan:
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        try:
            result = measure(name, script, kind, args)
        except Exception as e:
            result = Result(server=name, kind=kind, failed=f"{type(e).__name__}: {e}")
            result.notes.append(result.failed)
        summary = f"{result.pings} pings, {result.cpu_s:.2f} s CPU"
        print(
            f"[{name}] {result.failed or result.skipped or summary}",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    derive(results)
    print(table(results, args))
    settings = {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()}
    settings["plan"] = [[name, str(script), kind] for name, script, kind in args.plan]
    settings["cert"] = settings["key"] = None  # made for the run, gone after it
    env = environment(("twisted", "autobahn", "txaio", "websockets", "aiohttp", "tornado"))
    env["node"] = node_version(args.node)
    out = write_json(
        args.out,
        {
            "benchmark": "cpu_per_ping",
            "settings": settings,
            "environment": env,
            "results": [asdict(r) for r in results],
        },
    )
    print(f"wrote {out}")
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
