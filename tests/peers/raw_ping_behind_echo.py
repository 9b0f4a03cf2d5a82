#!/usr/bin/env python3
"""A raw RFC 6455 client (standard library only) that pings behind a big message.

It opens ``ws://HOST:PORT/``, then in ONE write sends a binary message of
``--size`` bytes followed by a Ping, so that the server reads the end of the
message and the Ping together and echoes the message before it meets the
Ping.  It then reads normally (everything, as fast as it comes), answers the
server's Pings, and waits up to ``--wait`` seconds for the Pong to its Ping
and the echo of its message.  Then it sends Close 1000 and waits up to 2 s
for the server's Close.

    raw_ping_behind_echo.py HOST PORT [--size BYTES] [--wait S]

Events, one JSON object per line (``t`` is ``time.monotonic()``)::

    {"event": "open", "t": ...}
    {"event": "sent", "t": ..., "bytes": n}         the message and the Ping left
    {"event": "pong", "t": ..., "after": s}         the Pong to our Ping, s after "sent"
    {"event": "echo", "t": ..., "bytes": n, "after": s}
    {"event": "summary", "t": ..., "pong_after": s|null, "echo_after": s|null,
     "pongs": n}
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

BINARY, CLOSE, PING, PONG = 0x2, 0x8, 0x9, 0xA
PAYLOAD = b"behind the echo"


def emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
    sys.stdout.flush()


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked, final frame."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n <= 125:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
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


def handshake(sock: socket.socket, host: str) -> bytearray:
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--wait", type=float, default=3.0)
    args = parser.parse_args()

    sock = socket.create_connection((args.host, args.port), timeout=10)
    inbound = handshake(sock, args.host)
    emit("open")
    message = os.urandom(args.size)
    data = frame(BINARY, message) + frame(PING, PAYLOAD)
    sent_at = time.monotonic()
    sock.sendall(data)
    emit("sent", bytes=len(data))
    sock.setblocking(False)
    pong_after = echo_after = None
    pongs = 0
    closed = eof = False
    deadline = sent_at + args.wait
    outbound = bytearray()
    while not eof and not closed:
        now = time.monotonic()
        if now >= deadline or (pong_after is not None and echo_after is not None):
            break
        readable, _, _ = select.select([sock], [], [], min(0.01, deadline - now))
        if readable:
            chunk = sock.recv(262144)
            if not chunk:
                eof = True
                break
            inbound += chunk
        while (parsed := parse(inbound)) is not None:
            opcode, payload = parsed
            now = time.monotonic()
            if opcode == PONG:
                pongs += 1
                if payload == PAYLOAD and pong_after is None:
                    pong_after = now - sent_at
                    emit("pong", after=pong_after)
            elif opcode == PING:
                outbound += frame(PONG, payload)
            elif opcode == BINARY:
                echo_after = now - sent_at
                emit("echo", bytes=len(payload), after=echo_after, same=payload == message)
            elif opcode == CLOSE:
                closed = True
        if outbound:
            sock.setblocking(True)
            sock.sendall(outbound)
            sock.setblocking(False)
            outbound.clear()
    if not eof and not closed:
        sock.setblocking(True)
        sock.sendall(frame(CLOSE, struct.pack("!H", 1000)))
        sock.settimeout(2.0)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
    sock.close()
    emit("summary", pong_after=pong_after, echo_after=echo_after, pongs=pongs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
