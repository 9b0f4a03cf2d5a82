"""
Instructions per keepalive cycle, in process: a regression guard that does not
care how noisy the machine is.

One cycle on one server protocol over an in-memory transport
(tests/unit/wire.py: a ``StringTransport`` and a ``task.Clock``): the timer
fires, the Ping is written, the client's Pong is parsed, the next deadline is
set.  Variants, each on its own connection:

- ``empty``: the measuring harness alone (two calls that do nothing);
- ``floor``: ``sendPing`` on a plain Autobahn protocol + the Pong parsed and
  ignored (bench/cpu_per_ping.py's floor without its shared timer, whose cost
  is spread over every connection);
- ``timer``: the floor plus one ``callLater`` per connection per cycle that
  sends the Ping and re-arms itself: the least a per-connection timer adds;
- ``ours``: ``KeepaliveMixin`` (ping_interval=1, ping_timeout=1).

Under ``--callgrind`` each variant runs in its own ``valgrind --tool=callgrind
--collect-atstart=no --toggle-collect=ffi_call`` process.  The measured loop
calls each step through a ctypes function pointer, so the step runs inside
libffi's ``ffi_call`` and only that is counted: imports, set-up, building the
Pong frame and warm-up cycles are left out.  (``ffi_call`` is an exported
symbol of libffi, so this works on stripped Pythons such as Debian's too;
nothing else in the process calls C through ctypes.)  Without ``--callgrind`` it times
the same loop with ``perf_counter`` (noisy; for a quick look).

    python bench/callgrind_cycle.py --callgrind          # 2000 cycles per variant
    python bench/callgrind_cycle.py --callgrind --smoke  # a few cycles (CI)
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from _report import environment, format_table, write_json  # noqa: E402

VARIANTS = ("empty", "floor", "timer", "ours")
INTERVAL = 1.0
PAYLOAD = b"\x00\x00\x00\x01"
#: The C function whose calls (and everything under them) callgrind counts.
TOGGLE = "ffi_call"
_MASK = b"\x37\xfa\x21\x3d"  # a fixed client mask: no randomness in the harness


def pong_frame(payload: bytes) -> bytes:
    """The client's masked Pong for ``payload`` (at most 125 bytes)."""
    masked = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x8A, 0x80 | len(payload)]) + _MASK + masked


def ping_payload(written: bytes) -> bytes:
    """The payload of the one unmasked Ping frame in ``written``."""
    if len(written) < 2 or written[0] != 0x89 or len(written) != 2 + (written[1] & 0x7F):
        raise AssertionError(f"expected exactly one Ping frame, the server wrote {written!r}")
    return written[2:]


class Cycle:
    """
    One variant's connection and its two measured steps: ``fire`` (the timer
    fires and the Ping is written) and ``pong`` (the client's Pong arrives).
    """

    def __init__(self, variant: str) -> None:
        from autobahn.twisted.websocket import WebSocketServerProtocol
        from twisted.internet.task import Clock

        from tests.unit.wire import open_server
        from twisted_keepalive import KeepaliveMixin

        self.clock = Clock()
        if variant == "ours":

            class Ours(KeepaliveMixin, WebSocketServerProtocol):
                ping_interval = INTERVAL
                ping_timeout = INTERVAL

            peer = open_server(Ours, self.clock)
            self.fire: Callable[[], object] = lambda: self.clock.advance(INTERVAL)
        else:
            peer = open_server(WebSocketServerProtocol, self.clock)
            protocol = peer.protocol
            if variant == "floor":
                self.fire = lambda: protocol.sendPing(PAYLOAD)
            elif variant == "timer":

                def ping_and_rearm() -> None:
                    protocol.sendPing(PAYLOAD)
                    self.clock.callLater(INTERVAL, ping_and_rearm)

                self.clock.callLater(INTERVAL, ping_and_rearm)
                self.fire = lambda: self.clock.advance(INTERVAL)
            elif variant == "empty":
                self.fire = lambda: None
            else:
                raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        self.variant = variant
        self.protocol = peer.protocol
        self.transport = peer.transport

    def run(self, cycles: int, step: Callable[..., object]) -> None:
        transport = self.transport
        data_received = self.protocol.dataReceived
        empty = self.variant == "empty"
        for _ in range(cycles):
            step(self.fire, ())
            if empty:
                step(_nothing, (b"",))
                continue
            pong = pong_frame(ping_payload(transport.value()))
            transport.clear()
            step(data_received, (pong,))
            if transport.value():
                raise AssertionError(f"unexpected reply to a Pong: {transport.value()!r}")


def _nothing(_: bytes) -> None:
    pass


def _direct(function: Callable[..., object], args: tuple[Any, ...]) -> object:
    return function(*args)


class _Measured:
    """
    ``measured(function, args)`` calls ``function(*args)`` from C, through
    libffi's ``ffi_call``: the one place callgrind counts.  Errors raised in
    the step are re-raised here (ctypes would only print them).
    """

    def __init__(self) -> None:
        import ctypes

        prototype = ctypes.CFUNCTYPE(None)
        self._pending: tuple[Callable[..., object], tuple[Any, ...]] | None = None
        self._error: BaseException | None = None
        self._callback = prototype(self._run)  # kept alive as long as self
        address = ctypes.cast(self._callback, ctypes.c_void_p).value
        self._call = prototype(address)

    def _run(self) -> None:
        assert self._pending is not None
        function, args = self._pending
        try:
            function(*args)
        except BaseException as e:
            self._error = e

    def __call__(self, function: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._pending = (function, args)
        self._call()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def inner(variant: str, cycles: int, warmup: int) -> float:
    """Run ``cycles`` measured cycles; return their wall-clock seconds."""
    cycle = Cycle(variant)
    cycle.run(warmup, _direct)
    gc.collect()
    started = time.perf_counter()
    cycle.run(cycles, _Measured())
    return time.perf_counter() - started


# -- the wrapper -----------------------------------------------------------------


def callgrind(variant: str, cycles: int, warmup: int, valgrind: str) -> int:
    """Instructions executed under ``ffi_call`` by one variant's run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        completed = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--collect-atstart=no",
                f"--toggle-collect={TOGGLE}",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--inner",
                variant,
                "--cycles",
                str(cycles),
                "--warmup",
                str(warmup),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"valgrind failed for {variant}:\n{completed.stderr[-3000:]}")
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no totals in callgrind output for {variant}")
        if int(match.group(1)) == 0:
            raise RuntimeError(
                f"callgrind counted nothing under {TOGGLE} for {variant}: is libffi's "
                f"{TOGGLE} visible to valgrind (an exported symbol) in this Python's ctypes?"
            )
        return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions under valgrind (else time with perf_counter)",
    )
    parser.add_argument("--cycles", type=int, default=None, help="measured cycles (default 2000)")
    parser.add_argument("--warmup", type=int, default=20, help="uncounted cycles first")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=str(BENCH / "results" / "callgrind_cycle.json"))
    parser.add_argument("--smoke", action="store_true", help="a few cycles: proves it runs (CI)")
    parser.add_argument("--inner", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cycles is None:
        args.cycles = 20 if args.smoke else 2000
    if args.inner:
        print(inner(args.inner, args.cycles, args.warmup))
        return 0

    variants = [v for v in args.variants.split(",") if v]
    if "empty" not in variants:
        variants.insert(0, "empty")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; expected some of {', '.join(VARIANTS)}")

    if args.callgrind:
        valgrind = shutil.which("valgrind")
        if valgrind is None:
            print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
            return 2
        unit, measure = "Ir", lambda v: callgrind(v, args.cycles, args.warmup, valgrind)
    else:
        # Best of five: the least disturbed by whatever else the machine runs.
        unit = "ns"
        measure = lambda v: min(inner(v, args.cycles, args.warmup) for _ in range(5)) * 1e9  # noqa: E731

    totals = {}
    for variant in variants:
        print(f"[{variant}] ...", file=sys.stderr, flush=True)
        totals[variant] = measure(variant)
    per_cycle = {v: totals[v] / args.cycles for v in variants}
    net = {v: per_cycle[v] - per_cycle["empty"] for v in variants}
    floor = net.get("floor")

    rows = [("variant", f"{unit} total", f"{unit}/cycle", f"net {unit}/cycle", "x floor")]
    for v in variants:
        ratio = net[v] / floor if floor and v != "empty" else None
        rows.append(
            (
                v,
                f"{totals[v]:.0f}",
                f"{per_cycle[v]:.0f}",
                "-" if v == "empty" else f"{net[v]:.0f}",
                "-" if ratio is None else f"{ratio:.2f}",
            )
        )
    how = (
        f"instructions (callgrind, collected under {TOGGLE} only)"
        if args.callgrind
        else "wall-clock ns, best of 5 (noisy)"
    )
    print(f"{args.cycles} keepalive cycles per variant; {how}; net = minus the empty harness")
    print("\n".join(format_table(rows)))
    if "ours" in net and floor:
        print(
            f"ours / floor = {net['ours'] / floor:.2f}"
            + (f"; ours / timer = {net['ours'] / net['timer']:.2f}" if net.get("timer") else "")
        )

    out = write_json(
        args.out,
        {
            "benchmark": "callgrind_cycle",
            "unit": unit,
            "settings": {
                "cycles": args.cycles,
                "warmup": args.warmup,
                "callgrind": args.callgrind,
                "toggle_collect": TOGGLE if args.callgrind else None,
            },
            "environment": environment(("twisted", "autobahn", "txaio")),
            "totals": totals,
            "per_cycle": per_cycle,
            "net_per_cycle": net,
            "ratio_to_floor": {v: net[v] / floor for v in variants if floor and v != "empty"},
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
