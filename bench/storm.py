"""
Reconnect storm: every client of a restarted server connects in the same
instant.  Are they all served, without a reset or a refusal, and how fast?
(issue 18)

``twistd -n wskeepalive --workers W`` at the defaults (20 s / 20 s) receives
N Node ``ws`` clients (bench/load.mjs) from N / 10,000 processes, each over
100 source addresses of its own (one address for 10,000 connects makes the
clients' own ``bind()`` the bottleneck: their requests then come seconds
after the server accepted them), all starting at one wall-clock instant with
every handshake in flight at once.  Each configuration runs in a network namespace
of its own, so that its kernel settings (``net.core.somaxconn``,
``net.ipv4.tcp_max_syn_backlog``, the ephemeral port range) and its TCP
counters (``ListenOverflows``, ``ListenDrops``, SYN cookies) are the run's
alone, and the host's are left as they were.

Per configuration it reports: connections opened and failed (with the
clients' error codes), the time from the first connect to the last open, the
connect-to-open time p50 / p99 / max, the deepest accept queue seen per
worker socket (``ss``), accepts per second per worker (peak over 1 s, from
the server's ``connections_opened_total``), the kernel's counters, and the
exit status after a SIGTERM with everything open.

Run from the repository root as root, after ``npm ci --prefix bench``::

    python bench/storm.py                         # 50,000 clients, the kernel defaults, then tuned
    python bench/storm.py --config somaxconn=65535,syn_backlog=65535,backlog=65535
    python bench/storm.py --smoke                 # 300 clients, 1 worker (seconds)

Each ``--config`` is ``key=value,...`` over ``clients``, ``workers``,
``backlog`` (the server's ``--backlog``), ``somaxconn``, ``syn_backlog``;
what it leaves out comes from the defaults below.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _metrics import scrape
from _procs import LoadGenerator, load_generator_ready, node_version
from _report import environment, format_table, write_json
from scale import Server

BENCH = Path(__file__).resolve().parent

#: A configuration's settings when it leaves them out: the kernel's defaults
#: here (somaxconn 4096, tcp_max_syn_backlog 2048) and the server's own.
DEFAULTS: dict[str, int] = {
    "clients": 50_000,
    "workers": 4,
    "backlog": 4096,
    "somaxconn": 4096,
    "syn_backlog": 2048,
}

#: The configurations of a plain run: the defaults, then queues deep enough
#: for the whole storm.
PLAIN_RUN = ["", "somaxconn=65535,syn_backlog=65535,backlog=65535"]

#: TcpExt counters of /proc/net/netstat that say a connect was not taken at once.
COUNTERS = (
    "ListenOverflows",
    "ListenDrops",
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
    "TCPReqQFullDoCookies",
    "TCPReqQFullDrop",
    "TCPAbortOnData",
)

PER_LOADER = 10_000


def tcp_counters() -> dict[str, int]:
    """The Tcp and TcpExt counters of this network namespace."""
    counters: dict[str, int] = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        lines = Path(path).read_text().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            kind = names.split(":")[0]
            if kind in ("Tcp", "TcpExt"):
                pairs = zip(names.split()[1:], values.split()[1:], strict=True)
                counters.update({f"{name}": int(value) for name, value in pairs})
    return counters


def accept_queues(port: int) -> list[int]:
    """The accept queue length of each socket listening on ``port`` (``ss``'s Recv-Q)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True
    ).stdout
    return [int(line.split()[1]) for line in out.splitlines() if line.split()]


def quantile(histogram: dict[str, int], q: float) -> float | None:
    """The q-quantile of a histogram in 10 ms steps, in seconds (its upper edge)."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for step in sorted(histogram, key=int):
        seen += histogram[step]
        if seen >= q * total:
            return (int(step) + 1) / 100
    return None


def measure(config: dict[str, int], hold: float) -> dict[str, Any]:
    """One storm, inside the run's namespace: start, storm, hold, stop."""
    args = argparse.Namespace(out="storm", workers=config["workers"], protocol=None)
    extra = ["--backlog", str(config["backlog"])]
    server = Server(args, 20.0, 20.0, "scheduled", tag="storm", extra=extra)
    result: dict[str, Any] = {"config": config}
    loaders: list[LoadGenerator] = []
    try:
        server.wait_ready(config["workers"], timeout=60)
        before = tcp_counters()
        plan = [PER_LOADER] * (config["clients"] // PER_LOADER)
        if config["clients"] % PER_LOADER:
            plan.append(config["clients"] % PER_LOADER)
        start_at = time.time() + 1.0 + 0.1 * len(plan)
        for i, clients in enumerate(plan):
            # 100 source addresses per process (127.<1+i>.0.1 ...): see load.mjs.
            addresses = ",".join(f"127.{1 + i}.0.{n}" for n in range(1, 101))
            options = {"local-address": addresses}
            options.update({"start-at": int(start_at * 1000), "open-ms": 1})
            loaders.append(LoadGenerator("node", server.url, clients, clients, options))
        deepest: dict[int, int] = {}
        rates: dict[str, float] = {}
        previous: dict[str, float] = {}
        opened_lines: list[dict[str, Any]] = []
        deadline = start_at + 180
        last_scrape = 0.0
        while len(opened_lines) < len(loaders) and time.time() < deadline:
            for i, depth in enumerate(accept_queues(server.port)):
                deepest[i] = max(deepest.get(i, 0), depth)
            if time.time() - last_scrape >= 1.0 and time.time() >= start_at:
                per_worker = opened_per_worker(server)
                if per_worker:  # a scrape may time out while the workers are busy
                    now = time.time()
                    for worker, total in per_worker.items():
                        if worker in previous:
                            rate = (total - previous[worker]) / (now - last_scrape)
                            rates[worker] = max(rates.get(worker, 0.0), rate)
                    previous, last_scrape = per_worker, now
            for loader in loaders:
                if loader.last is None or loader.last.get("type") != "open":
                    line = _poll(loader)
                    if line is not None:
                        opened_lines.append(line)
            time.sleep(0.1)
        time.sleep(hold)
        final = [loader.counts() for loader in loaders]
        after = tcp_counters()
        result.update(clients_summary(final, start_at))
        result["kernel"] = {name: after.get(name, 0) - before.get(name, 0) for name in COUNTERS}
        result["kernel_other"] = {
            name: after[name] - before.get(name, 0)
            for name in after
            if name not in COUNTERS and after[name] != before.get(name, 0)
        }
        result["accept_queue_max"] = [deepest[i] for i in sorted(deepest)]
        result["accepts_per_s_peak"] = {w: rates[w] for w in sorted(rates)}
        result["opened_per_worker"] = opened_per_worker(server)
    finally:
        # SIGTERM with every connection open: the drain closes them with 1001.
        status, seconds = server.stop(60)
        result["exit"] = status
        result["stop_s"] = round(seconds, 2)
        codes: dict[str, int] = {}
        for loader in loaders:
            final_counts = loader.close() or {}
            for code, n in final_counts.get("closeCodes", {}).items():
                codes[code] = codes.get(code, 0) + n
        result["close_codes_at_stop"] = codes
    return result


def _poll(loader: LoadGenerator) -> dict[str, Any] | None:
    """The loader's "open" line if it has printed one, without waiting."""
    try:
        return loader.wait_for("open", 0.01)
    except TimeoutError:
        return None


def opened_per_worker(server: Server) -> dict[str, float]:
    """``connections_opened_total`` of each worker, from the parent's /metrics."""
    try:
        metrics = scrape(server.metrics_url, timeout=5)
    except OSError:
        return {}
    name = "connections_opened_total"
    workers = metrics.label_values("worker_pid", "worker")
    if not workers:  # one process: its own series, unlabelled
        return {"0": metrics.value(name)}
    return {worker: metrics.value(name, worker=worker) for worker in workers}


def clients_summary(final: list[dict[str, Any]], start_at: float) -> dict[str, Any]:
    """What the clients saw: opened, failed, errors, open times."""
    opening: dict[str, int] = {}
    errors: dict[str, int] = {}
    for counts in final:
        for step, n in counts.get("opening", {}).items():
            opening[step] = opening.get(step, 0) + n
        for code, n in counts["errors"].items():
            errors[code] = errors.get(code, 0) + n
    # t0 and lastOpen are each loader's performance.now(): relative to its
    # own start; the loaders share start_at, so the worst one is the span.
    spans = [c["lastOpen"] - c["t0"] for c in final if c.get("lastOpen") is not None]
    return {
        "opened": sum(c["opened"] for c in final),
        "open_now": sum(c["open"] for c in final),
        "failed": sum(c["failed"] for c in final),
        "closed": sum(c["closed"] for c in final),
        "errors": errors,
        "all_open_s": round(max(spans), 2) if spans else None,
        "open_p50_s": quantile(opening, 0.50),
        "open_p99_s": quantile(opening, 0.99),
        "open_max_s": quantile(opening, 1.0),
    }


# -- the namespace around each run ------------------------------------------------


def run_in_namespace(config: dict[str, int], hold: float) -> dict[str, Any]:
    """Make a namespace with the config's kernel settings and measure in it."""
    name = f"wsstorm{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        inside = ["ip", "netns", "exec", name]
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        settings = {
            "net.core.somaxconn": config["somaxconn"],
            "net.ipv4.tcp_max_syn_backlog": config["syn_backlog"],
            "net.ipv4.ip_local_port_range": "1024 65535",
        }
        for key, value in settings.items():
            subprocess.run([*inside, "sysctl", "-q", "-w", f"{key}={value}"], check=True)
        command = [*inside, sys.executable, __file__, "--inside", json.dumps(config)]
        command += ["--hold", str(hold)]
        out = subprocess.run(command, capture_output=True, text=True, cwd=BENCH)
        if out.returncode != 0:
            return {"config": config, "failed": out.stderr.strip()[-1500:]}
        return json.loads(out.stdout.splitlines()[-1])
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def parse_config(text: str, base: dict[str, int]) -> dict[str, int]:
    config = dict(base)
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"storm.py: unknown setting {key!r} in --config {text!r}")
        config[key] = int(value)
    return config


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ["clients", "workers", "somaxconn", "syn q", "backlog", "opened", "failed",
         "errors", "all open s", "open p50", "p99", "max", "accept q max", "accepts/s/worker",
         "ListenOverflows", "cookies", "SIGTERM closes", "exit"]
    ]  # fmt: skip
    for r in results:
        c = r["config"]
        head = [str(c[k]) for k in ("clients", "workers", "somaxconn", "syn_backlog", "backlog")]
        if "failed" in r and isinstance(r["failed"], str):
            note = "run failed: " + r["failed"].splitlines()[-1][:60]
            rows.append([*head, note] + [""] * (len(rows[0]) - len(head) - 1))
            continue
        kernel = r["kernel"]
        rows.append([
            *head, str(r["opened"]), str(r["failed"]),
            ",".join(f"{k}:{v}" for k, v in r["errors"].items()) or "-",
            str(r["all_open_s"]), *(f"{r[k]:.2f}" if r[k] is not None else "-"
                                    for k in ("open_p50_s", "open_p99_s", "open_max_s")),
            "/".join(map(str, r["accept_queue_max"])),
            "/".join(f"{v:.0f}" for v in r["accepts_per_s_peak"].values()),
            str(kernel["ListenOverflows"]), str(kernel["SyncookiesSent"]),
            ",".join(f"{k}:{v}" for k, v in r["close_codes_at_stop"].items()) or "-",
            str(r["exit"]),
        ])  # fmt: skip
    return "\n".join(format_table(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", help="key=value,... (repeatable)")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds held after the storm")
    parser.add_argument("--smoke", action="store_true", help="300 clients, 1 worker")
    parser.add_argument("--out", default=str(BENCH / "results" / "storm.json"))
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        print(json.dumps(measure(json.loads(args.inside), args.hold)))
        return 0
    if not load_generator_ready():
        return 2
    if os.geteuid() != 0:
        print("storm.py: needs root, for a network namespace per run", file=sys.stderr)
        return 2
    base = dict(DEFAULTS)
    if args.smoke:
        base.update(clients=300, workers=1)
        args.hold = min(args.hold, 2.0)
    configs = [parse_config(text, base) for text in (args.config or PLAIN_RUN)]
    results = []
    for config in configs:
        if config["workers"] * 19_000 < config["clients"]:
            raise SystemExit(f"storm.py: {config['clients']} clients need more than "
                             f"{config['workers']} workers (20,000 descriptors each)")  # fmt: skip
        results.append(run_in_namespace(config, args.hold))
        print(table(results[-1:]), flush=True)
    print()
    print(table(results))
    env: dict[str, Any] = environment(("twisted", "autobahn", "txaio"))
    env["node"] = node_version("node")
    settings = {"hold": args.hold, "smoke": args.smoke}
    data = {"benchmark": "storm", "settings": settings, "environment": env, "runs": results}
    print(f"wrote {write_json(args.out, data)}")
    return 0 if all(r.get("opened") == r["config"]["clients"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
