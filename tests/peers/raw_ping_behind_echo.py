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
import os
import select
import socket
import struct
import sys
import time

# The raw peer's framing: a script's own folder is first on sys.path.
from raw_peer import emit, frame, handshake, parse

BINARY, CLOSE, PING, PONG = 0x2, 0x8, 0x9, 0xA
PAYLOAD = b"behind the echo"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--wait", type=float, default=3.0)
    args = parser.parse_args()

    sock = socket.create_connection((args.host, args.port), timeout=10)
    inbound = handshake(sock, args.host, "/")
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
