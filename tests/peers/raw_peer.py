#!/usr/bin/env python3
"""A raw RFC 6455 client (standard library only) that misbehaves on purpose.

No WebSocket library lets a peer flood Pongs, answer Pings with the wrong
payload, send a 126-byte Ping or read slower than the server writes, so the
fault tests use this one.  It opens ``ws://HOST:PORT/PATH``, then until
``--duration`` passes (or the server closes): reads (all it can, or
``--read-chunk`` bytes every ``--read-every`` seconds), answers each Ping as
``--answer`` says, and sends what ``--flood`` / ``--big-ping`` ask for.  At
the end it sends Close 1000 and waits up to 2 s for the server's Close.

    raw_peer.py HOST PORT [--path /] [--duration S]
                [--answer right|wrong|none]
                [--flood ping|pong] [--flood-rate FRAMES_PER_S] [--no-read]
                [--big-ping] [--read-chunk BYTES] [--read-every S]
                [--trickle BYTES --trickle-every S] [--rcvbuf BYTES]
                [--burst BYTES]

``--flood-rate 0`` floods as fast as the socket takes it; ``--no-read``
never reads at all (a flood that ignores what comes back).  ``--trickle``
sends a BYTES-long binary message every S seconds, each cut in two so that
one frame is always in progress: every send ends one frame and begins the
next (a peer that is always "mid-frame" yet passes a frame boundary every
S seconds, where it could have sent its Pong).  ``--burst`` answers each
Ping only after BYTES of 1 KiB text messages: a live peer whose Pong waits
behind its own data in the same TCP stream.

Events, one JSON object per line (``t`` is ``time.monotonic()``)::

    {"event": "open", "t": ...}
    {"event": "ping", "t": ..., "data": "<hex>"}       each Ping from the server
    {"event": "close", "t": ..., "code": int|null, "reason": str}
                                                        the server's Close frame
    {"event": "eof", "t": ...}                          the server closed TCP
    {"event": "summary", "t": ..., "frames_sent": n, "bytes_read": n,
     "pongs_read": n, "pings_read": n, "messages_read": n}
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import socket
import struct
import sys
import time

PING, PONG, CLOSE, TEXT = 0x9, 0xA, 0x8, 0x1


def emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
    sys.stdout.flush()


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked, final frame (the length is encoded however long the payload is)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n <= 125:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def parse(buffer: bytearray) -> tuple[int, bytes] | None:
    """Take one unmasked server frame off ``buffer``: (opcode, payload), or None."""
    if len(buffer) < 2:
        return None
    opcode = buffer[0] & 0x0F
    length = buffer[1] & 0x7F
    pos = 2
    if length == 126:
        if len(buffer) < 4:
            return None
        (length,) = struct.unpack("!H", buffer[2:4])
        pos = 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        (length,) = struct.unpack("!Q", buffer[2:10])
        pos = 10
    if len(buffer) < pos + length:
        return None
    payload = bytes(buffer[pos : pos + length])
    del buffer[: pos + length]
    return opcode, payload


def handshake(sock: socket.socket, host: str, path: str) -> bytearray:
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.decode(errors="replace"))
    return bytearray(rest)


class Client:
    def __init__(self, sock: socket.socket, args: argparse.Namespace, buffer: bytearray) -> None:
        self.sock = sock
        self.args = args
        self.inbound = buffer
        self.outbound = bytearray()
        self.counts = {"frames_sent": 0, "bytes_read": 0, "pongs_read": 0, "pings_read": 0,
                       "messages_read": 0}  # fmt: skip
        self.closed_by_server = False
        self.eof = False
        self.flood_counter = 0
        self.trickle_rest = b""

    def send(self, opcode: int, payload: bytes) -> None:
        self.outbound += frame(opcode, payload)
        self.counts["frames_sent"] += 1

    def handle(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self.counts["pings_read"] += 1
            if not self.args.quiet_pings:
                emit("ping", data=payload.hex())
            if self.args.burst:
                for _ in range(self.args.burst // 1024):
                    self.send(TEXT, b"b" * 1024)
            if self.args.answer == "right":
                self.send(PONG, payload)
            elif self.args.answer == "wrong":
                self.send(PONG, bytes(b ^ 0xFF for b in payload) + b"?")
        elif opcode == PONG:
            self.counts["pongs_read"] += 1
        elif opcode == CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            emit("close", code=code, reason=payload[2:].decode("utf-8", "replace"))
            if not self.closed_by_server:
                # Finish a half-sent frame first, or the Close would be inside it.
                self.outbound += self.trickle_rest
                self.trickle_rest = b""
                self.send(CLOSE, payload[:2])
            self.closed_by_server = True
        else:
            self.counts["messages_read"] += 1

    def read(self, limit: int) -> None:
        try:
            data = self.sock.recv(limit)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.eof = True
            emit("eof")
            return
        self.counts["bytes_read"] += len(data)
        self.inbound += data
        while (parsed := parse(self.inbound)) is not None:
            self.handle(*parsed)

    def flush(self) -> None:
        if not self.outbound:
            return
        try:
            sent = self.sock.send(self.outbound)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.outbound.clear()
            return
        del self.outbound[:sent]

    def flood(self, budget: int) -> None:
        # Keep a little queued, never an unbounded amount: what the socket
        # does not take waits here.
        opcode = PING if self.args.flood == "ping" else PONG
        size = self.args.payload_size
        while budget > 0 and len(self.outbound) < 65536:
            self.flood_counter += 1
            payload = self.flood_counter.to_bytes(8, "big").rjust(size, b"\x00")[-size:]
            self.send(opcode, payload)
            budget -= 1

    def trickle(self) -> None:
        message = frame(0x2, b"t" * self.args.trickle)
        half = len(message) // 2
        self.outbound += self.trickle_rest + message[:half]
        self.trickle_rest = message[half:]
        self.counts["frames_sent"] += 1

    def run(self) -> None:
        args = self.args
        sock = self.sock
        sock.setblocking(False)
        start = time.monotonic()
        deadline = start + args.duration
        next_read = next_trickle = start
        flooded = 0
        if args.big_ping:
            self.send(PING, b"x" * 126)
        while not self.eof:
            now = time.monotonic()
            if now >= deadline and not self.closed_by_server:
                break
            if self.closed_by_server and now >= deadline + 2.0:
                break
            slow = args.read_every > 0
            want_read = not args.no_read and (not slow or now >= next_read)
            timeout = 0.01
            if slow and not want_read:
                timeout = min(timeout, max(0.0, next_read - now))
            readable, writable, _ = select.select(
                [sock] if want_read else [],
                [sock] if self.outbound or args.flood else [],
                [],
                timeout,
            )
            if readable:
                if slow:
                    self.read(args.read_chunk)
                    next_read += args.read_every
                else:
                    self.read(262144)
            if args.flood and not self.closed_by_server:
                elapsed = time.monotonic() - start
                due = 1 << 30 if args.flood_rate <= 0 else int(elapsed * args.flood_rate) - flooded
                if due > 0:
                    before = self.counts["frames_sent"]
                    self.flood(due)
                    flooded += self.counts["frames_sent"] - before
            if args.trickle and not self.closed_by_server and time.monotonic() >= next_trickle:
                self.trickle()
                next_trickle += args.trickle_every
            if writable or self.outbound:
                self.flush()
        if not self.eof and not self.closed_by_server:
            self.outbound += self.trickle_rest
            self.trickle_rest = b""
            self.send(CLOSE, struct.pack("!H", 1000))
            end = time.monotonic() + 2.0
            while not self.eof and not self.closed_by_server and time.monotonic() < end:
                self.flush()
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable:
                    self.read(262144)
        emit("summary", **self.counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--path", default="/")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--answer", choices=["right", "wrong", "none"], default="right")
    parser.add_argument("--flood", choices=["ping", "pong"], default=None)
    parser.add_argument("--flood-rate", type=float, default=0.0)
    parser.add_argument("--payload-size", type=int, default=125)
    parser.add_argument("--no-read", action="store_true")
    parser.add_argument("--big-ping", action="store_true")
    parser.add_argument("--read-chunk", type=int, default=16384)
    parser.add_argument("--read-every", type=float, default=0.0)
    parser.add_argument("--trickle", type=int, default=0)
    parser.add_argument("--trickle-every", type=float, default=0.05)
    parser.add_argument("--rcvbuf", type=int, default=0)
    parser.add_argument("--quiet-pings", action="store_true")
    parser.add_argument("--burst", type=int, default=0)
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if args.rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
    sock.connect((args.host, args.port))
    buffer = handshake(sock, args.host, args.path)
    emit("open")
    Client(sock, args, buffer).run()
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
