"""
A lean load generator for storms: N WebSocket clients in one process on
plain non-blocking sockets, each writing a ready-made opening handshake the
moment its TCP connect completes, answering Pings with Pongs and Closes with
Closes, and nothing else.  ``--rate`` paces the connects (connects per
second) instead of starting them all at once, and ``--gaps 1`` histograms the
time between Pings as load.mjs does: the long runs of bench/half_million.py
use it as their cheapest client.

Node's ``ws`` (bench/load.mjs) does a full client's work per connection; five
such processes on the two cores beside the server sent their upgrade
requests seconds after the kernel had completed their TCP handshakes, so a
storm measured them as much as the server.  This one costs a few tens of µs
per connection.  It speaks load.mjs's protocol, so ``_procs.LoadGenerator``
drives either: JSON lines on stdout ("open" once every connection opened or
failed, "counts" on request, "final" at exit), commands ``counts`` and
``exit`` on stdin.

    python bench/raw_clients.py --url ws://127.0.0.1:9000/ --connections 10000 \\
        --local-address 127.1.0.1,127.1.0.2 --start-at 1764720000000 [--rate 500 --gaps 1]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import json
import os
import selectors
import socket
import struct
import sys
import time
from typing import Any
from urllib.parse import urlsplit

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

#: Connects started between two looks at what is ready.
CONNECT_BATCH = 100


#: Linux's IP_BIND_ADDRESS_NO_PORT: a socket bound to a source address gets
#: its port at connect(), unique per 4-tuple, not at bind(), where the search
#: for a port free on that address slows down as its ports fill.
BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

#: The mask of every client frame.  RFC 6455 wants it unpredictable (against
#: proxies that cache); no server checks, and an all-zero key saves XORing
#: each Pong's payload in Python: the load generator's CPU is the machine's.
MASK = b"\0\0\0\0"


class Client:
    __slots__ = ("buffer", "last", "opened", "pinged", "sock", "started")

    def __init__(self, sock: socket.socket, started: float) -> None:
        self.sock = sock
        self.started = started
        self.opened = False
        self.pinged = False
        self.buffer = b""
        self.last = 0.0  # open, then the latest Ping


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (client frames are masked, RFC 6455 section 5.3)."""
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + payload


class Storm:
    def __init__(self, args: argparse.Namespace) -> None:
        url = urlsplit(args.url)
        self.address = (url.hostname or "127.0.0.1", url.port or 80)
        self.request_head = (
            f"GET {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        ).encode()
        self.sources = [a for a in args.local_address.split(",") if a]
        self.total = args.connections
        self.selector = selectors.DefaultSelector()
        self.counts: dict[str, Any] = {
            "connections": self.total, "open": 0, "opened": 0, "failed": 0, "closed": 0,
            "pings": 0, "pinged": 0, "closeCodes": {}, "errors": {}, "churned": 0,
        }  # fmt: skip
        self.opening: dict[str, int] = {}
        self.gaps: dict[str, int] | None = {} if args.gaps else None
        self.first: dict[str, int] = {}
        self.rate = args.rate
        self.t0: float | None = None
        self.last_open: float | None = None
        self.announced = False
        self.exiting = False

    # -- output ------------------------------------------------------------

    def emit(self, kind: str) -> None:
        line = {"type": kind, "t": time.perf_counter(), **self.counts}
        line.update(opening=self.opening, t0=self.t0, lastOpen=self.last_open)
        if self.gaps is not None:
            line.update(gaps=self.gaps, first=self.first)
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def count_error(self, code: str) -> None:
        self.counts["errors"][code] = self.counts["errors"].get(code, 0) + 1

    # -- connections -------------------------------------------------------

    def connect_some(self, start: int, count: int) -> int:
        """Start connects ``start`` .. ``start + count``; the next to start."""
        if self.t0 is None:
            self.t0 = time.perf_counter()
        end = min(self.total, start + count)
        for i in range(start, end):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                if self.sources:
                    sock.setsockopt(socket.SOL_IP, BIND_ADDRESS_NO_PORT, 1)
                    sock.bind((self.sources[i % len(self.sources)], 0))
                result = sock.connect_ex(self.address)
            except OSError as error:
                self.fail(Client(sock, time.perf_counter()), error.errno)
                continue
            client = Client(sock, time.perf_counter())
            if result not in (0, errno.EINPROGRESS):
                self.fail(client, result)
                continue
            self.selector.register(sock, WRITE, client)
        return end

    def fail(self, client: Client, code: int | None) -> None:
        """``client``'s connection failed or was lost without a Close (errno ``code``)."""
        if code:
            self.count_error(errno.errorcode.get(code, str(code)))
        self.drop(client)
        if client.opened:
            self.counts["open"] -= 1
            if not self.exiting:
                self.counts["closed"] += 1
                codes = self.counts["closeCodes"]
                codes["1006"] = codes.get("1006", 0) + 1
        else:
            self.counts["failed"] += 1

    def drop(self, client: Client) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(client.sock)
        client.sock.close()

    def writable(self, client: Client) -> None:
        failure = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if failure:
            self.fail(client, failure)
            return
        key = base64.b64encode(os.urandom(16))
        try:
            client.sock.send(self.request_head + key + b"\r\n\r\n")
        except OSError as error:
            self.fail(client, error.errno)
            return
        self.selector.modify(client.sock, READ, client)

    def readable(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as error:
            self.fail(client, error.errno)
            return
        if not data:
            self.fail(client, errno.ECONNRESET if not client.opened else None)
            return
        client.buffer += data
        if not client.opened:
            head, found, rest = client.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.count_error("status " + head.split(b"\r\n", 1)[0].decode(errors="replace"))
                self.fail(client, None)
                return
            client.opened = True
            client.buffer = rest
            now = time.perf_counter()
            self.last_open = now
            step = str(int((now - client.started) * 100))
            self.opening[step] = self.opening.get(step, 0) + 1
            client.last = now
            self.counts["opened"] += 1
            self.counts["open"] += 1
        self.frames(client)

    def frames(self, client: Client) -> None:
        buffer = client.buffer
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                (length,), start = struct.unpack("!H", buffer[2:4]), 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                (length,), start = struct.unpack("!Q", buffer[2:10]), 10
            if len(buffer) < start + length:
                break
            payload, buffer = buffer[start : start + length], buffer[start + length :]
            if opcode == 0x9:  # Ping
                self.counts["pings"] += 1
                self.ping_seen(client)
                try:
                    client.sock.send(masked(0xA, payload))
                except OSError as error:
                    self.fail(client, error.errno)
                    return
            elif opcode == 0x8:  # Close: answer it; the server then closes TCP
                code = str(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else "1005"
                self.counts["open"] -= 1
                if not self.exiting:
                    codes = self.counts["closeCodes"]
                    codes[code] = codes.get(code, 0) + 1
                    self.counts["closed"] += 1
                with contextlib.suppress(OSError):
                    client.sock.send(masked(0x8, payload[:2]))
                self.drop(client)
                return
        client.buffer = buffer

    def ping_seen(self, client: Client) -> None:
        if self.gaps is not None:
            # 10 ms steps from the open to the first Ping, then between Pings.
            now = time.perf_counter()
            histogram = self.gaps if client.pinged else self.first
            step = str(round((now - client.last) * 100))
            histogram[step] = histogram.get(step, 0) + 1
            client.last = now
        if not client.pinged:
            client.pinged = True
            self.counts["pinged"] += 1

    # -- the loop ----------------------------------------------------------

    def command(self) -> None:
        line = sys.stdin.readline()
        if not line or line.strip() == "exit":
            self.exit()
        elif line.strip() == "counts":
            self.emit("counts")

    def exit(self) -> None:
        self.exiting = True
        self.emit("final")
        sys.exit(0)

    def run(self, start_at_ms: float) -> None:
        self.selector.register(sys.stdin, READ, None)
        started = 0  # connects started so far
        began: float | None = None
        while True:
            wait = start_at_ms / 1000 - time.time()
            if wait <= 0 and started < self.total:
                # A batch at a time, answering what is ready in between: a
                # client whose connect completed writes its request at once,
                # rather than after 10,000 more sockets were made.
                batch = CONNECT_BATCH
                if self.rate:
                    began = time.monotonic() if began is None else began
                    due = int(self.rate * (time.monotonic() - began)) + 1
                    batch = max(0, min(batch, due - started))
                    wait = 0.01  # look again soon for the next connects due
                started = self.connect_some(started, batch)
            connected = started >= self.total
            timeout = None if connected else max(0.0, wait)
            for key, events in self.selector.select(timeout):
                if key.data is None:
                    self.command()
                elif events & WRITE:
                    self.writable(key.data)
                else:
                    self.readable(key.data)
            done = self.counts["opened"] + self.counts["failed"]
            if connected and not self.announced and done >= self.total:
                self.announced = True
                self.emit("open")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=0, help="ignored: all at once")
    parser.add_argument("--local-address", default="")
    parser.add_argument("--start-at", type=float, default=0.0, help="ms since the epoch")
    parser.add_argument("--open-ms", type=int, default=1, help="always on")
    parser.add_argument("--rate", type=float, default=0.0, help="connects/s (default: all at once)")
    parser.add_argument("--gaps", type=int, default=0, help="1: histogram the gaps between Pings")
    args = parser.parse_args()
    Storm(args).run(args.start_at)


if __name__ == "__main__":
    main()
