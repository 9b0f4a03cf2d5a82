#!/usr/bin/env python3
"""A raw RFC 6455 client (standard library only) that sends one large frame slowly.

Used to check that a peer busy sending a frame -- which cannot interleave a
Pong inside it -- is not failed by the heartbeat.  It opens a connection,
sends one masked binary frame of ``--size`` bytes at ``--rate`` bytes per
second, then reads frames for ``--linger`` seconds, answering every Ping with a
Pong.  Prints JSON lines: ``{"event": "open"}``, ``{"event": "sent", "t": ...}``
when the frame is out, ``{"event": "ping", "t": ..., "data": hex}``,
``{"event": "close", "code": int|null, "reason": str}``.

    raw_slow_frame.py HOST PORT [--size BYTES] [--rate BYTES_PER_S] [--linger S]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import struct
import sys
import time


def emit(**event: object) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def header(opcode: int, n: int) -> tuple[bytes, bytes]:
    """A masked frame's header for an ``n``-byte payload, and its mask key."""
    head = bytes([0x80 | opcode])
    if n <= 125:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key, key


def mask(data: bytes, key: bytes, offset: int) -> bytes:
    return bytes(b ^ key[(offset + i) % 4] for i, b in enumerate(data))


def read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--size", type=int, default=3 * 1024 * 1024)
    parser.add_argument("--rate", type=int, default=1024 * 1024)
    parser.add_argument("--linger", type=float, default=1.5)
    args = parser.parse_args()

    sock = socket.create_connection((args.host, args.port))
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: " + args.host.encode() + b"\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    emit(event="open")

    # One binary frame, its payload paced at --rate; we read nothing meanwhile,
    # like a single-threaded client busy uploading.
    head_bytes, mask_key = header(0x2, args.size)
    sock.sendall(head_bytes)
    chunk = max(1, args.rate // 20)
    sent = 0
    start = time.monotonic()
    while sent < args.size:
        n = min(chunk, args.size - sent)
        sock.sendall(mask(b"\x00" * n, mask_key, sent))
        sent += n
        pause = start + sent / args.rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    emit(event="sent", t=time.monotonic())

    # Now answer Pings until --linger passes.
    sock.settimeout(0.05)
    buffer = rest
    deadline = time.monotonic() + args.linger
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
            if not data:
                emit(event="close", code=1006, reason="")
                return
            buffer += data
        except TimeoutError:
            pass
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            length = buffer[1] & 0x7F
            pos = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                (length,) = struct.unpack("!H", buffer[2:4])
                pos = 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                (length,) = struct.unpack("!Q", buffer[2:10])
                pos = 10
            if len(buffer) < pos + length:
                break
            payload, buffer = buffer[pos : pos + length], buffer[pos + length :]
            if opcode == 0x9:
                emit(event="ping", t=time.monotonic(), data=payload.hex())
                pong, pong_key = header(0xA, len(payload))
                sock.sendall(pong + mask(payload, pong_key, 0))
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                emit(event="close", code=code, reason=payload[2:].decode("utf-8", "replace"))
                return
    close, close_key = header(0x8, 2)
    sock.sendall(close + mask(struct.pack("!H", 1000), close_key, 0))
    emit(event="close", code=None, reason="done")


if __name__ == "__main__":
    main()
