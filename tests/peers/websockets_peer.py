#!/usr/bin/env python3
"""Third-party WebSocket test peer built on the ``websockets`` library (v17).

Integration tests run this script as a subprocess to talk to
twisted-keepalive's Autobahn/Twisted protocols from an independent
implementation, and read what the peer saw from its stdout: one JSON object
per line, flushed after each line.

Modes::

    websockets_peer.py client URL [--no-pong] [--duration S] [--send-every S]
                              [--ping-interval S|none] [--ping-timeout S|none]
    websockets_peer.py server --port P [--host 127.0.0.1] [--no-pong]
                              [--ping-interval S|none] [--ping-timeout S|none]

Events (the server adds ``"conn": n``, numbered from 1, to per-connection ones)::

    {"event": "listening", "port": P}                      (server only)
    {"event": "open"}                                       client
    {"event": "open", "remote": "host:port", "conn": n}     server
    {"event": "ping", "t": <time.monotonic()>, "data": "<hex payload>"}
    {"event": "pong", "t": <time.monotonic()>, "data": "<hex payload>"}
    {"event": "message", "data": "<text>"}                 text message
    {"event": "message", "binary": true, "data": "<hex>"}  binary message
    {"event": "close", "code": int|null, "reason": str, "sent_code": int|null}
    {"event": "error", "error": "<repr>"}                   connect failed

``code``/``reason`` are what the remote endpoint sent (1006 with reason ""
if no Close frame arrived); ``sent_code`` is the code of the Close frame this
peer sent, if any.  ``t`` is taken when the frame is parsed.

``--no-pong`` makes the peer never answer Pings: websockets answers them
inside its sans-I/O protocol, so outgoing Pong frames are dropped there.
websockets' own keepalive is off (``ping_interval=None``) unless
``--ping-interval`` is given, so the only Pings on the wire are the other
side's.  The client exits 0 after printing ``close``; ``--duration`` closes
with 1000 after S seconds, SIGINT/SIGTERM close with 1000 too.  The server
echoes every message back and runs until SIGINT/SIGTERM (then it closes its
connections with 1001 and exits 0).

Only the standard library and ``websockets`` are used.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


_conn_ids = itertools.count(1)


def _install_hooks(conn: ClientConnection | ServerConnection, no_pong: bool) -> None:
    """Make ``conn`` drop the Pong frames that its sans-I/O protocol queues.

    ``Protocol.recv_frame`` answers a Ping by calling ``self.send_frame(Frame(
    PONG, ...))``; shadowing ``send_frame`` on the instance filters exactly
    those (and any explicit ``pong()``), leaving every other frame untouched.
    """
    if not no_pong:
        return
    protocol = conn.protocol
    original_send_frame = protocol.send_frame

    def send_frame(frame: Frame) -> None:
        if frame.opcode is Opcode.PONG:
            return
        original_send_frame(frame)

    protocol.send_frame = send_frame  # type: ignore[method-assign]


def _observe(event: object, extra: dict[str, Any]) -> None:
    """Log control frames.  ``Connection.process_event`` is called
    synchronously from ``data_received`` for each parsed frame."""
    if isinstance(event, Frame):
        if event.opcode is Opcode.PING:
            emit({"event": "ping", "t": time.monotonic(), "data": bytes(event.data).hex(), **extra})
        elif event.opcode is Opcode.PONG:
            emit({"event": "pong", "t": time.monotonic(), "data": bytes(event.data).hex(), **extra})


class PeerClientConnection(ClientConnection):
    no_pong = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _install_hooks(self, self.no_pong)

    def process_event(self, event: Any) -> None:
        if self.response is not None:  # first event is the HTTP response
            _observe(event, {})
        super().process_event(event)


class PeerServerConnection(ServerConnection):
    no_pong = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn_id = next(_conn_ids)
        _install_hooks(self, self.no_pong)

    def process_event(self, event: Any) -> None:
        if self.request is not None:  # first event is the HTTP request
            _observe(event, {"conn": self.conn_id})
        super().process_event(event)


def _message_event(msg: str | bytes, extra: dict[str, Any]) -> dict[str, Any]:
    if isinstance(msg, str):
        return {"event": "message", "data": msg, **extra}
    return {"event": "message", "binary": True, "data": bytes(msg).hex(), **extra}


def _close_event(
    conn: ClientConnection | ServerConnection, extra: dict[str, Any]
) -> dict[str, Any]:
    sent = conn.protocol.close_sent
    return {
        "event": "close",
        "code": conn.close_code,
        "reason": conn.close_reason or "",
        "sent_code": sent.code if sent is not None else None,
        **extra,
    }


def _on_stop_signals(callback: Any) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, callback)


async def run_client(args: argparse.Namespace) -> int:
    factory = type(
        "NoPongClientConnection" if args.no_pong else "ClientConnection",
        (PeerClientConnection,),
        {"no_pong": args.no_pong},
    )
    try:
        ws = await connect(
            args.url,
            create_connection=factory,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
        )
    except Exception as exc:  # reported, then exit 1
        emit({"event": "error", "error": repr(exc)})
        return 1
    emit({"event": "open"})

    async def close_normally() -> None:
        await ws.close(1000)

    async def reader() -> None:
        try:
            while True:
                emit(_message_event(await ws.recv(), {}))
        except ConnectionClosed:
            pass

    async def ticker(every: float) -> None:
        try:
            for n in itertools.count(1):
                await asyncio.sleep(every)
                await ws.send(f"tick {n}")
        except ConnectionClosed:
            pass

    async def timer(duration: float) -> None:
        await asyncio.sleep(duration)
        await close_normally()

    background = []
    if args.send_every is not None:
        background.append(asyncio.create_task(ticker(args.send_every)))
    if args.duration is not None:
        background.append(asyncio.create_task(timer(args.duration)))
    _on_stop_signals(lambda: background.append(asyncio.create_task(close_normally())))

    await reader()
    await ws.wait_closed()
    for task in background:
        task.cancel()
    emit(_close_event(ws, {}))
    return 0


async def run_server(args: argparse.Namespace) -> int:
    factory = type(
        "NoPongServerConnection" if args.no_pong else "ServerConnection",
        (PeerServerConnection,),
        {"no_pong": args.no_pong},
    )

    async def handler(ws: ServerConnection) -> None:
        extra = {"conn": ws.conn_id}  # type: ignore[attr-defined]
        host, port = ws.remote_address[:2]
        emit({"event": "open", "remote": f"{host}:{port}", **extra})
        try:
            while True:
                msg = await ws.recv()
                emit(_message_event(msg, extra))
                await ws.send(msg)
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        emit(_close_event(ws, extra))

    stop = asyncio.Event()
    _on_stop_signals(stop.set)
    async with serve(
        handler,
        args.host,
        args.port,
        create_connection=factory,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        emit({"event": "listening", "port": port})
        await stop.wait()
    return 0


def _seconds_or_none(value: str) -> float | None:
    if value.lower() == "none":
        return None
    seconds = float(value)
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be >= 0 or 'none'")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)

    client = sub.add_parser("client", help="connect to URL")
    client.add_argument("url")
    client.add_argument(
        "--duration", type=float, default=None, help="close with 1000 after S seconds"
    )
    client.add_argument(
        "--send-every", type=float, default=None, help="send text 'tick N' every S seconds"
    )

    server = sub.add_parser("server", help="echo server")
    server.add_argument("--port", type=int, required=True, help="0: any free port")
    server.add_argument("--host", default="127.0.0.1")

    for p in (client, server):
        p.add_argument("--no-pong", action="store_true", help="never answer Pings")
        p.add_argument(
            "--ping-interval",
            type=_seconds_or_none,
            default=None,
            help="websockets' own keepalive interval (default: none)",
        )
        p.add_argument(
            "--ping-timeout",
            type=_seconds_or_none,
            default=None,
            help="websockets' own keepalive timeout (default: none)",
        )

    args = parser.parse_args(argv)
    run = run_client if args.mode == "client" else run_server
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
