#!/usr/bin/env python3
"""Python test peer: N clients of ``twisted_keepalive.ReconnectingClient``.

Each client is an Autobahn client protocol with ``KeepaliveMixin``, kept
connected by its own ``ReconnectingClient``.  Tests run this script as a
subprocess and read what the clients saw from stdout: one JSON object per
line, flushed after each.

Usage::

    reconnecting_peer.py URL [--clients N] [--ping-interval S] [--ping-timeout S]
                             [--close-timeout S] [--initial-delay S] [--max-delay S]
                             [--handshake-timeout S] [--spread S]

Events (``client`` numbers the clients from 1; ``t`` is ``time.monotonic()``)::

    {"event": "open", "client": i, "t": ..., "attempts": n, "server": "<Server header>"}
    {"event": "close", "client": i, "t": ..., "code": int|null, "reason": str|null,
     "timeout": "<cause>"|null}
    {"event": "message", "client": i, "t": ..., "data": "<text>"}
    {"event": "reconnect", "client": i, "t": ..., "delay": s, "attempt": n, "why": str}
    {"event": "stopped", "t": ...}

``attempts`` on ``open`` is how many attempts that open took (1: the
first).  ``--spread S`` starts the clients at random over S seconds.
SIGTERM/SIGINT stop every client (Close 1000, closing handshake) and then
print ``stopped`` and exit 0.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.endpoints import clientFromString
from twisted.logger import LogEvent, globalLogBeginner

from twisted_keepalive import KeepaliveMixin, ReconnectingClient, set_keepalive_options


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


class Client(KeepaliveMixin, WebSocketClientProtocol):
    number = 0

    def onOpen(self) -> None:
        client = self.factory.reconnecting
        emit(
            "open",
            client=self.factory.number,
            attempts=client.attempts,
            server=self.http_headers.get("server"),
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # What the server says, e.g. tests/fleet's backends naming themselves.
        if not isBinary:
            emit("message", client=self.factory.number, data=payload.decode("utf-8", "replace"))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        timeout = self.keepalive_timeout
        emit(
            "close",
            client=self.factory.number,
            code=code,
            reason=reason,
            timeout=None if timeout is None else timeout.cause.value,
        )


def observe_reconnects(clients: dict[int, int]) -> None:
    """Print our reconnect log events; keep Twisted's own log quiet."""

    def observer(event: LogEvent) -> None:
        if event.get("keepalive_event") == "reconnect":
            number = clients.get(id(event.get("log_source")), 0)
            emit("reconnect", client=number, delay=event["delay"], attempt=event["attempt"],
                 why=event["why"])  # fmt: skip

    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--ping-interval", type=float, default=1.0)
    parser.add_argument("--ping-timeout", type=float, default=1.0)
    parser.add_argument("--close-timeout", type=float, default=1.0)
    parser.add_argument("--initial-delay", type=float, default=0.5)
    parser.add_argument("--max-delay", type=float, default=4.0)
    parser.add_argument("--handshake-timeout", type=float, default=2.0)
    parser.add_argument("--spread", type=float, default=0.0)
    args = parser.parse_args()

    parts = urlsplit(args.url)
    endpoint = clientFromString(reactor, f"tcp:{parts.hostname}:{parts.port}:timeout=5")
    services: list[ReconnectingClient] = []
    for number in range(1, args.clients + 1):
        factory = WebSocketClientFactory(args.url)
        factory.protocol = Client
        factory.number = number
        factory.setProtocolOptions(openHandshakeTimeout=args.handshake_timeout)
        set_keepalive_options(
            factory, ping_interval=args.ping_interval, ping_timeout=args.ping_timeout,
            close_timeout=args.close_timeout,
        )  # fmt: skip
        client = ReconnectingClient(
            endpoint, factory, initial_delay=args.initial_delay, max_delay=args.max_delay
        )
        factory.reconnecting = client
        services.append(client)
    observe_reconnects({id(client): n for n, client in enumerate(services, 1)})

    for client in services:
        reactor.callLater(random.uniform(0, args.spread), client.startService)

    def stop(*_: object) -> None:
        stopping = [client.stopService() for client in services if client.running]
        DeferredList(stopping).addBoth(lambda _: (emit("stopped"), reactor.stop()))

    def take_signals() -> None:
        # After reactor.run() has installed its own handlers, which would
        # stop the reactor at once and drop every connection.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: reactor.callFromThread(stop))

    reactor.callWhenRunning(take_signals)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
