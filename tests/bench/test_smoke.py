"""
Every benchmark script under bench/ still runs: each in its ``--smoke``
variant (a few connections, a few seconds), in a subprocess, as a user would
run it.  Only that it ran and wrote its JSON is asserted -- never a timing:
these machines are shared and the figures of a smoke run mean nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"

NODE_READY = shutil.which("node") is not None and (BENCH / "node_modules" / "ws").is_dir()
NODE_MISSING = "Node.js or bench/node_modules/ws is missing: run `npm ci --prefix bench`"


def run_bench(script: str, *options: str, out: Path, timeout: float = 80) -> dict[str, object]:
    """Run ``bench/SCRIPT OPTIONS --out OUT``; the JSON it wrote."""
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *options, "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert f"wrote {out}" in result.stdout, result.stdout[-4000:]
    data: dict[str, object] = json.loads(out.read_text())
    assert data["benchmark"] == Path(script).stem
    return data


@pytest.mark.skipif(not NODE_READY, reason=NODE_MISSING)
def test_cpu_per_ping_smoke_measures_ours_and_the_floor_on_both_framings(tmp_path: Path) -> None:
    servers = ["floor", "ours", "twisted-floor", "twisted-ours"]
    data = run_bench(
        "cpu_per_ping.py", "--smoke", "--servers", ",".join(servers), out=tmp_path / "c.json"
    )
    results = data["results"]
    assert [r["server"] for r in results] == ["baseline", *servers]  # type: ignore[index, union-attr]
    # Every row measured pings: no framing was skipped or broke.
    assert all(r["pings"] > 0 for r in results[1:]), results  # type: ignore[index]


@pytest.mark.skipif(not NODE_READY, reason=NODE_MISSING)
def test_cpu_per_ping_smoke_measures_ours_and_the_floor_over_tls(tmp_path: Path) -> None:
    # A certificate made for the run; the Node clients accept it.
    servers = ["floor-tls", "ours-tls"]
    data = run_bench(
        "cpu_per_ping.py", "--smoke", "--servers", ",".join(servers), out=tmp_path / "t.json"
    )
    results = data["results"]
    assert [r["server"] for r in results] == ["baseline", *servers]  # type: ignore[index, union-attr]
    assert all(r["pings"] > 0 for r in results[1:]), results  # type: ignore[index]


def test_callgrind_cycle_smoke_runs_every_variant(tmp_path: Path) -> None:
    # Without --callgrind: wall-clock timing, no valgrind needed.
    run_bench("callgrind_cycle.py", "--smoke", out=tmp_path / "g.json")


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
@pytest.mark.timeout(330)
def test_callgrind_cycle_smoke_under_valgrind(tmp_path: Path) -> None:
    # One variant (and "empty", always measured): each costs a valgrind start.
    # Valgrind runs ~50x slower than Python alone: about a minute on a quiet
    # machine, three on a loaded one (seen at load average 7 on 2 cores).
    run_bench(
        "callgrind_cycle.py",
        "--smoke",
        "--callgrind",
        "--variants",
        "ours",
        out=tmp_path / "g.json",
        timeout=300,
    )


@pytest.mark.skipif(not NODE_READY, reason=NODE_MISSING)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_scale_smoke_holds_connections_from_several_source_addresses(
    tmp_path: Path, workers: str
) -> None:
    data = run_bench("scale.py", "--smoke", "--workers", workers, out=tmp_path / "s.json")
    [run] = data["runs"]  # type: ignore[misc]
    assert run["failed"] is None, run["notes"]


@pytest.mark.skipif(not NODE_READY, reason=NODE_MISSING)
def test_herd_smoke_runs_every_first_ping_spread(tmp_path: Path) -> None:
    data = run_bench("herd.py", "--smoke", out=tmp_path / "h.json")
    assert [r["spread"] for r in data["results"]] == [0.0, 0.5, 1.0]  # type: ignore[index]


def test_memory_per_connection_smoke_counts_both_variants(tmp_path: Path) -> None:
    data = run_bench("memory_per_connection.py", "--connections", "50", out=tmp_path / "m.json")
    assert data["ours_bytes_per_connection"] > data["plain_bytes_per_connection"] > 0  # type: ignore[operator]
    assert data["web_ours_bytes_per_connection"] > data["web_plain_bytes_per_connection"] > 0  # type: ignore[operator]


def test_handshake_cost_smoke_measures_both_paths(tmp_path: Path) -> None:
    data = run_bench(
        "handshake_cost.py", "--handshakes", "30", "--rounds", "1", out=tmp_path / "h.json"
    )
    figures = data["figures"]
    assert set(figures) == {"Autobahn parses the handshake", "twisted.web site, then Autobahn"}  # type: ignore[arg-type]
    assert all(f["cpu_seconds"] > 0 and f["bytes"] > 0 for f in figures.values())  # type: ignore[union-attr]


HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")


@pytest.mark.skipif(not NODE_READY, reason=NODE_MISSING)
@pytest.mark.skipif(HAPROXY is None, reason="haproxy (Debian's haproxy package) is missing")
def test_fleet_scale_smoke_holds_connections_through_haproxy(tmp_path: Path) -> None:
    data = run_bench("fleet_scale.py", "--smoke", out=tmp_path / "f.json")
    assert data["opened"] == 300
    assert sum(data["per_backend"]) == 300  # type: ignore[arg-type]
    assert data["timeouts"] == 0


@pytest.mark.skipif(not NODE_READY, reason=NODE_MISSING)
def test_half_million_smoke_holds_paced_lean_clients_and_says_what_the_log_costs(
    tmp_path: Path,
) -> None:
    # In a network namespace of its own as root, else on the host's loopback.
    data = run_bench(
        "half_million.py", "--smoke", "--connection-log", "on,off", out=tmp_path / "h.json"
    )
    runs = data["runs"]
    assert [r["notes"][-1] for r in runs] == ["--connection-log on", "--connection-log off"]  # type: ignore[index]
    for run in runs:  # type: ignore[attr-defined]
        assert run["opened"] == run["connections"] == 200, run
        assert run["client_pings"] > 0 and run["exit_status"] == 0, run
        assert run["shutdown_close_codes"] == {"1001": 200}, run
        assert set(run["open_cpu_s"]) == {"parent", "workers", "loaders"}, run
        assert run["sockstat"]["inuse"] >= 200, run


@pytest.mark.skipif(not NODE_READY, reason=NODE_MISSING)
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="storm.py runs each storm in a network namespace of its own: needs root and ip(8)",
)
def test_storm_smoke_serves_every_client_of_a_storm_and_stops_them_with_1001(
    tmp_path: Path,
) -> None:
    data = run_bench("storm.py", "--smoke", out=tmp_path / "s.json", timeout=120)
    runs = data["runs"]
    assert len(runs) == 2, runs  # the kernel's default queues, then deep ones
    for run in runs:  # type: ignore[union-attr]
        assert run["opened"] == run["config"]["clients"] == 300, run
        assert run["failed"] == 0 and run["exit"] == 0, run
        # The SIGTERM met every connection open and closed each with 1001.
        assert run["close_codes_at_stop"] == {"1001": 300}, run
