#!/usr/bin/env python3
"""Our KeepaliveMixin echo server as a separate process, for fault tests.

The fault tests run this server where the test process cannot be: inside a
network namespace, under a reactor stall it is told to perform, or as the
process whose memory is measured.  It prints one JSON object per line
(flushed) and reads one command per line on stdin.

    keepalive_server.py [--host 127.0.0.1] [--port 0]
                        [--ping-interval S|none] [--ping-timeout S|none]
                        [--close-timeout S] [--first-ping-spread F]
                        [--stream BYTES_PER_S] [--chunk BYTES]
                        [--app-ping-every S] [--quiet]
                        [--framing autobahn|twisted]

``--stream`` sends binary messages at that rate to every connection whose
request path is ``/stream``, without flow control (``transport.write``
buffers whatever the peer does not take), so a peer that stops reading fills
our kernel send buffer and then Twisted's.  Other paths get an echo server.
``--app-ping-every`` makes every connection call ``ping()`` that often and
count how its Deferreds settle.  ``--quiet`` leaves out per-connection
``open`` events (``close`` and ``timeout`` are always printed).
``--framing twisted`` serves the same on Twisted's own WebSocket API
(``with_keepalive`` in a ``twisted.web`` Site); its ``close`` events carry
the code of the peer's Close as the keepalive transport read it
(``peer_close_code``: Twisted tells the application none), ``null`` if none
came, and ``wasClean`` is whether the TCP connection closed cleanly.

Events (``t`` is ``time.monotonic()``; ``conn`` numbers connections from 1)::

    {"event": "listening", "port": P, "pid": PID}
    {"event": "open", "conn": n, "peer": "tcp4:...", "path": "/", "t": ...}
    {"event": "timeout", "conn": n, "cause": "peer_silent", "waited": s,
     "lateness": s, "idle": s, "queued": bytes|null, "latency": s, "t": ...}
    {"event": "close", "conn": n, "code": int|null, "reason": str,
     "wasClean": bool, "latency": s, "pongs": n, "streamed": bytes, "t": ...}
    {"event": "stats", ...}          answer to the ``stats`` command, see below
    {"event": "blocked", "seconds": s, "t": ...}   after a ``block`` command

Commands on stdin::

    stats          gc.collect(), then print the counters, the RSS, Python's
                   allocated memory blocks and the delayed calls:
                   {"event": "stats", "rss_kib", "blocks", "opened",
                   "closed", "open", "pings_sent", "pongs_received",
                   "timeouts": {cause: n}, "delayed_calls",
                   "keepalive_calls", "app_pings": {...}, "t"}
    block S        block the reactor with time.sleep(S) (a handler doing
                   blocking work), then print "blocked"
    quit           stop the reactor and exit 0

Only the standard library, Twisted (and wsproto), Autobahn and twisted_keepalive are used.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import itertools
import json
import os
import sys
import time
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor, stdio, task
from twisted.protocols.basic import LineReceiver

from twisted_keepalive import KeepaliveMixin, Timeout, collect_stats, set_keepalive_options
from twisted_keepalive.core.wheel import TimerWheel
from twisted_keepalive.glue.link import KeepaliveLink


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def rss_kib() -> int:
    """Resident set size of this process, KiB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _malloc_trim() -> None:
    # glibc keeps freed heap pages; trimming shows what is still *used*.
    name = ctypes.util.find_library("c")
    if name is not None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


class Counters:
    """What every connection's ``ping()`` Deferreds did."""

    def __init__(self) -> None:
        self.issued = 0
        self.fired = 0
        self.failed = 0

    def track(self, pinged: Any) -> None:
        """Count one ``ping()`` Deferred and how it settles."""
        self.issued += 1

        def fired(_: float) -> None:
            self.fired += 1

        def failed(_: object) -> None:
            self.failed += 1

        pinged.addCallbacks(fired, failed)

    def as_dict(self) -> dict[str, int]:
        pending = self.issued - self.fired - self.failed
        return {"issued": self.issued, "fired": self.fired, "failed": self.failed,
                "pending": pending}  # fmt: skip


_conn_ids = itertools.count(1)
#: The timers a connection's keepalive may leave behind if it leaks.
KEEPALIVE_TIMER_OWNERS = (KeepaliveLink, TimerWheel)


class ServerProtocol(KeepaliveMixin, WebSocketServerProtocol):
    """An echo server, optionally streaming to ``/stream`` clients."""

    options: argparse.Namespace
    app_pings: Counters

    conn = 0
    path = "/"
    streamed = 0
    _streamer: task.LoopingCall | None = None
    _app_pinger: task.LoopingCall | None = None

    def onConnect(self, request: Any) -> None:
        self.conn = next(_conn_ids)
        self.path = request.path

    def onOpen(self) -> None:
        options = self.options
        if not options.quiet:
            emit("open", conn=self.conn, peer=self.peer, path=self.path, t=time.monotonic())
        if options.stream and self.path == "/stream":
            self._streamer = task.LoopingCall(self._stream)
            self._streamer.start(options.chunk / options.stream, now=True)
        if options.app_ping_every:
            self._app_pinger = task.LoopingCall(self._app_ping)
            self._app_pinger.start(options.app_ping_every, now=False)

    def _stream(self) -> None:
        if self.state != self.STATE_OPEN:
            # Closing: Autobahn refuses data now; onClose stops the stream.
            return
        self.sendMessage(b"\x00" * self.options.chunk, isBinary=True)
        self.streamed += self.options.chunk

    def _app_ping(self) -> None:
        self.app_pings.track(self.ping())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)

    def onKeepaliveTimeout(self, timeout: Timeout) -> None:
        emit_timeout(self.conn, timeout)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        for call in (self._streamer, self._app_pinger):
            if call is not None and call.running:
                call.stop()
        self._streamer = self._app_pinger = None
        link = self._keepalive_link
        emit(
            "close",
            conn=self.conn,
            code=code,
            reason=reason or "",
            wasClean=wasClean,
            latency=self.latency,
            pongs=link.heartbeat.pongs if link is not None else 0,
            streamed=self.streamed,
            t=time.monotonic(),
        )


def emit_timeout(conn: int, timeout: Timeout) -> None:
    emit(
        "timeout",
        conn=conn,
        cause=timeout.cause.value,
        waited=timeout.waited,
        lateness=timeout.lateness,
        idle=timeout.idle,
        queued=timeout.queued,
        latency=timeout.latency,
        t=time.monotonic(),
    )


class WebServerProtocol:
    """The same server on Twisted's own WebSocket API: no base class."""

    options: argparse.Namespace
    app_pings: Counters

    def __init__(self, request: Any) -> None:
        self.conn = next(_conn_ids)
        self.path = request.path.decode()
        self.peer = "tcp4:{0.host}:{0.port}".format(request.getClientAddress())
        self.streamed = 0
        self.pongs = 0
        self.transport: Any = None
        self._calls: list[task.LoopingCall] = []

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        options = self.options
        if not options.quiet:
            emit("open", conn=self.conn, peer=self.peer, path=self.path, t=time.monotonic())
        if options.stream and self.path == "/stream":
            streamer = task.LoopingCall(self._stream)
            self._calls.append(streamer)
            streamer.start(options.chunk / options.stream, now=True)
        if options.app_ping_every:
            pinger = task.LoopingCall(self._app_ping)
            self._calls.append(pinger)
            pinger.start(options.app_ping_every, now=False)

    def _stream(self) -> None:
        if self.transport.keepalive_timeout is not None:
            return
        try:
            self.transport.sendBytesMessage(b"\x00" * self.options.chunk)
        except Exception:
            return  # closing: Twisted refuses data now
        self.streamed += self.options.chunk

    def _app_ping(self) -> None:
        self.app_pings.track(self.transport.ping())

    def textMessageReceived(self, message: str) -> None:
        self.transport.sendTextMessage(message)

    def bytesMessageReceived(self, data: bytes) -> None:
        self.transport.sendBytesMessage(data)

    def pongReceived(self, payload: bytes) -> None:
        self.pongs += 1

    def keepaliveTimedOut(self, timeout: Timeout) -> None:
        emit_timeout(self.conn, timeout)

    def connectionLost(self, reason: Any) -> None:
        from twisted.internet.error import ConnectionDone

        for call in self._calls:
            if call.running:
                call.stop()
        self._calls = []
        timeout = self.transport.keepalive_timeout if self.transport is not None else None
        emit(
            "close",
            conn=self.conn,
            code=self.transport.peer_close_code if self.transport is not None else None,
            reason="keepalive ping timeout" if timeout is not None else str(reason.value),
            wasClean=reason.check(ConnectionDone) is not None,
            latency=self.transport.latency if self.transport is not None else 0.0,
            pongs=self.pongs,
            streamed=self.streamed,
            t=time.monotonic(),
        )


class WebFactory:
    def __init__(self, protocol: type[WebServerProtocol]) -> None:
        self.protocol = protocol

    def buildProtocol(self, request: Any) -> WebServerProtocol:
        return self.protocol(request)


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, factory: Any, app_pings: Counters) -> None:
        self.factory = factory
        self.app_pings = app_pings

    def lineReceived(self, line: bytes) -> None:
        command, *args = line.decode().split()
        if command == "stats":
            self.report()
        elif command == "block":
            seconds = float(args[0])
            time.sleep(seconds)
            emit("blocked", seconds=seconds, t=time.monotonic())
        elif command == "quit":
            reactor.stop()  # type: ignore[attr-defined]

    def report(self) -> None:
        gc.collect()
        _malloc_trim()
        stats = self.factory.keepalive_stats
        calls = reactor.getDelayedCalls()  # type: ignore[attr-defined]
        ours = [
            call
            for call in calls
            if isinstance(getattr(call.func, "__self__", None), KEEPALIVE_TIMER_OWNERS)
        ]
        emit(
            "stats",
            rss_kib=rss_kib(),
            blocks=sys.getallocatedblocks(),
            opened=stats.opened,
            closed=stats.closed,
            open=stats.open,
            pings_sent=stats.pings_sent,
            pongs_received=stats.pongs_received,
            timeouts={cause.value: n for cause, n in stats.timeouts.items()},
            delayed_calls=len(calls),
            keepalive_calls=len(ours),
            app_pings=self.app_pings.as_dict(),
            protocols=sum(
                1 for o in gc.get_objects() if isinstance(o, (ServerProtocol, WebServerProtocol))
            ),
            t=time.monotonic(),
        )

    def connectionLost(self, reason: object) -> None:
        # stdin closed: the test went away.
        if reactor.running:  # type: ignore[attr-defined]
            reactor.stop()  # type: ignore[attr-defined]


def _seconds_or_none(value: str) -> float | None:
    return None if value.lower() == "none" else float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ping-interval", type=_seconds_or_none, default=20.0)
    parser.add_argument("--ping-timeout", type=_seconds_or_none, default=20.0)
    parser.add_argument("--close-timeout", type=float, default=10.0)
    parser.add_argument("--first-ping-spread", type=float, default=1.0)
    parser.add_argument("--stream", type=int, default=0, help="bytes/s to /stream clients")
    parser.add_argument("--chunk", type=int, default=16384, help="bytes per streamed message")
    parser.add_argument("--app-ping-every", type=float, default=0.0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--framing", choices=("autobahn", "twisted"), default="autobahn")
    options = parser.parse_args(argv)

    app_pings = Counters()
    if options.framing == "twisted":
        factory, site = web_server(options, app_pings)
    else:
        factory = site = autobahn_server(options, app_pings)
    collect_stats(factory)
    port = reactor.listenTCP(  # type: ignore[attr-defined]
        options.port, site, backlog=4096, interface=options.host
    )
    stdio.StandardIO(Commands(factory, app_pings))
    emit("listening", port=port.getHost().port, pid=os.getpid())
    reactor.run()  # type: ignore[attr-defined]
    return 0


def web_server(options: argparse.Namespace, app_pings: Counters) -> tuple[Any, Any]:
    from twisted.web.server import Site
    from twisted.web.websocket import WebSocketResource

    from twisted_keepalive.web import with_keepalive

    protocol = type(
        "WebServer", (WebServerProtocol,), {"options": options, "app_pings": app_pings}
    )
    factory = with_keepalive(
        WebFactory(protocol),
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        close_timeout=options.close_timeout,
        first_ping_spread=options.first_ping_spread,
    )
    resource = WebSocketResource(factory)
    resource.isLeaf = True  # every path, /stream too
    return factory, Site(resource, timeout=None)


def autobahn_server(options: argparse.Namespace, app_pings: Counters) -> Any:
    # The URL only names the server in the handshake; any port will do.
    factory = WebSocketServerFactory(f"ws://{options.host}")
    factory.protocol = type(
        "Server", (ServerProtocol,), {"options": options, "app_pings": app_pings}
    )
    set_keepalive_options(
        factory,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        close_timeout=options.close_timeout,
        first_ping_spread=options.first_ping_spread,
    )
    return factory


if __name__ == "__main__":
    sys.exit(main())
