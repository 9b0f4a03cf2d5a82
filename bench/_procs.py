"""
What the benchmark scripts share about processes: /proc readings, free
ports, and the Node load generator (bench/load.mjs) driven through its
stdin/stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# -- /proc -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (10 ms ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # Fields after "(comm)"; comm may contain spaces.  utime, stime are the
    # 14th and 15th fields of the line, 12th and 13th after the comm.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def schedstat_seconds(pid: int) -> float:
    """CPU time of ``pid``'s main thread at nanosecond resolution, or 0.0."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _status_field(pid: int, name: str) -> int | None:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return None


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid``, KiB."""
    rss = _status_field(pid, "VmRSS")
    if rss is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return rss


def voluntary_switches(pid: int) -> int:
    """How often ``pid`` has slept and woken (voluntary context switches)."""
    return _status_field(pid, "voluntary_ctxt_switches") or 0


def children(pid: int) -> list[int]:
    """The child processes of ``pid``."""
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(child) for child in f.read().split())
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return (total - idle) / CLOCK_TICK, total / CLOCK_TICK


def free_port() -> int:
    """A loopback TCP port nobody listens on (free when this returns)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the load generator ------------------------------------------------------


class LoadGenerator:
    """
    bench/load.mjs, driven through its stdin/stdout: ``connections`` clients
    to ``url``; ``options`` are more of its command-line options, e.g.
    ``{"local-address": "127.0.0.2", "gaps": 1}``; ``program`` runs another
    generator of the same protocol instead (bench/raw_clients.py).
    """

    def __init__(
        self,
        node: str,
        url: str,
        connections: int,
        concurrency: int,
        options: dict[str, object] | None = None,
        program: Sequence[str] | None = None,
    ) -> None:
        extra: Sequence[str] = [
            item for name, value in (options or {}).items() for item in (f"--{name}", str(value))
        ]
        self.process = subprocess.Popen(
            [
                # bench/raw_clients.py speaks the same protocol, for storms.
                *(program or (node, str(BENCH / "load.mjs"))),
                "--url",
                url,
                "--connections",
                str(connections),
                "--concurrency",
                str(concurrency),
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=BENCH,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.last: dict[str, Any] | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"load generator: no {kind!r} line within {timeout} s")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)  # for the next caller
                raise RuntimeError("load generator exited early")
            self.last = line
            if line["type"] == kind:
                return line

    def command(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def counts(self) -> dict[str, Any]:
        self.command("counts")
        return self.wait_for("counts", 10)

    def close(self) -> dict[str, Any] | None:
        """Drop every connection and exit; the final counts, if it printed them."""
        final = None
        with contextlib.suppress(Exception):
            self.command("exit")
            final = self.wait_for("final", 10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return final


def load_generator_ready() -> bool:
    """Whether bench/node_modules/ws is there; says what to run when it is not."""
    if (BENCH / "node_modules" / "ws").is_dir():
        return True
    print("bench/node_modules/ws is missing: run `npm ci --prefix bench` first", file=sys.stderr)
    return False


def node_version(node: str) -> str:
    """What ``node --version`` prints, for a result file's environment."""
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
