"""
The parameters of ``twistd wskeepalive``, as ``usage.Options`` reads them:
name, short name, default, help text (units and defaults, as ``--help``
shows them).  The options repeated or given with a docstring of their own
(``--listen``, ``--allowed-origin``, ``--cors-origin``) are methods of
:class:`~.options.Options`.
"""

from __future__ import annotations

from typing import Any

from . import framing
from .gc import GC_SCHEDULED
from .settings import (
    DEFAULT_BACKLOG,
    DEFAULT_DRAIN_SPREAD,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_WORKER_TIMEOUT,
)

__all__ = ["OPTION_PARAMETERS"]

#: ``[name, short name, default, help]`` of each option that takes one value.
OPTION_PARAMETERS: list[list[Any]] = [
    [
        "ping-interval",
        None,
        None,
        "Seconds between keepalive pings, or 'off' to send none. "
        "[default: 20.0, or the ping_interval of a --protocol that subclasses KeepaliveMixin]",
    ],
    [
        "ping-timeout",
        None,
        None,
        "Seconds to wait for the pong before failing the connection with 1011 "
        "'keepalive ping timeout', or 'off' to never fail it. "
        "[default: 20.0, or the ping_timeout of a --protocol that subclasses KeepaliveMixin]",
    ],
    [
        "close-timeout",
        None,
        None,
        "Seconds a closing handshake may take (after a keepalive timeout, or at "
        "shutdown) before the TCP connection is aborted. "
        "[default: 10.0, or the close_timeout of a --protocol that subclasses KeepaliveMixin]",
    ],
    [
        "handshake-timeout",
        None,
        str(DEFAULT_HANDSHAKE_TIMEOUT),
        "Seconds a client may take from its TCP connect to the end of its opening "
        "handshake, its HTTP request included, before the connection is closed (an "
        "idle plain HTTP connection too). Raise it for slow clients, or for reconnect "
        "storms on a busy machine, where an accepted client may wait its turn.",
    ],
    [
        "drain-grace",
        None,
        "0",
        "Seconds a stop keeps serving, new connections included, after /readyz turned "
        "503: behind a load balancer, at least its health-check interval times the "
        "failures it needs to take the server out (e.g. HAProxy's inter 2s fall 3: 6).",
    ],
    [
        "drain-spread",
        None,
        str(DEFAULT_DRAIN_SPREAD),
        "Seconds over which a stop spreads the 1001s, so that the clients reconnect "
        "elsewhere at a steady rate, not all at once; 0 sends them together.",
    ],
    [
        "demo",
        None,
        "on",
        "'on' to serve the demo page at /, 'off' to answer 404 there "
        "(/keepalive.js, /healthz and /readyz are always served).",
    ],
    [
        "access-log",
        None,
        "off",
        "'on' to log every plain HTTP request (pages, /healthz, /readyz, /metrics) "
        "with its method, path, status and peer; 'off' logs none of them, so that a "
        "probe every few seconds adds nothing to the log (twistd's log prints every "
        "level).",
    ],
    [
        "connection-log",
        None,
        "on",
        "'on' to log every WebSocket connection's opening and closing (peer, close "
        "code, reason, last latency) at info level; 'off' logs neither, for servers "
        "with so many connections that the lines cost CPU (with --workers, each is "
        "serialised by a worker and written by the parent). Timeouts, drains, "
        "worker crashes and every warning are logged either way.",
    ],
    [
        "browser-heartbeat",
        None,
        None,
        "'on' to answer the heartbeats of the browser module served at /keepalive.js "
        "(text messages starting with NUL 'wsk1 ping') and keep them from the "
        "protocol's onMessage; 'off' to pass them on as ordinary messages. "
        "[default: on, or the browser_heartbeat of a --protocol that sets it]",
    ],
    [
        "framing",
        None,
        framing.AUTOBAHN,
        "The WebSocket implementation: 'autobahn', or 'twisted' for Twisted's own "
        "twisted.web.websocket (Twisted 25.5 or later: pip install "
        "'twisted-keepalive[web]'). Twisted's has no --allowed-origin, --max-message-size "
        "or --external-url, and does not tell the close code of a Close the peer sent.",
    ],
    [
        "protocol",
        None,
        None,
        "Dotted name of the protocol class to serve: with --framing autobahn an "
        "autobahn.twisted.websocket.WebSocketServerProtocol subclass (KeepaliveMixin is "
        "added if the class lacks it); with --framing twisted a twisted.web.websocket "
        "protocol class with a buildProtocol(request) class method. "
        f"[default: {framing.DEFAULT_PROTOCOLS[framing.AUTOBAHN]}, or "
        f"{framing.DEFAULT_PROTOCOLS[framing.TWISTED]} with --framing twisted]",
    ],
    [
        "max-message-size",
        None,
        None,
        "Largest message accepted, in bytes (0: no limit); a larger one fails "
        "the connection with 1009. Not with --framing twisted: wsproto has no limit. "
        f"[default: {DEFAULT_MAX_MESSAGE_SIZE}]",
    ],
    [
        "external-url",
        None,
        None,
        "The ws:// or wss:// URL clients use to reach this server (behind a proxy, "
        "the proxy's), given to Autobahn's factory: the protocol sees it as "
        "factory.url. Not with --framing twisted. [default: none]",
    ],
    [
        "metrics",
        None,
        None,
        "Serve Prometheus metrics at /metrics on this Twisted endpoint, e.g. "
        "tcp:9100:interface=127.0.0.1 (needs the metrics extra: "
        "pip install 'twisted-keepalive[metrics]'). [default: off]",
    ],
    [
        "workers",
        None,
        "1",
        "Processes to run, each with its own reactor, all serving the --listen ports "
        "(tcp and tcp6 only; the kernel spreads connections over them with "
        "SO_REUSEPORT). A worker that dies is replaced; SIGTERM stops them all. "
        "With --metrics, one endpoint serves every worker's metrics, labelled by worker. "
        "SIGHUP replaces the workers one at a time (see docs/workers.md).",
    ],
    [
        "worker-timeout",
        None,
        f"{DEFAULT_WORKER_TIMEOUT:g}",
        "With --workers: seconds a worker's reactor may leave the parent's probes "
        "unanswered before the worker is killed (SIGKILL) and replaced, or 'off'. "
        "A blocked reactor accepts no connections and pings no clients; 30 s is "
        "far beyond any stall of a healthy one (a full garbage collection or "
        "closing 10,000 connections takes under a second) and shorter than a "
        "client's default ping interval plus timeout (40 s).",
    ],
    [
        "gc",
        None,
        GC_SCHEDULED,
        "How Python's cyclic garbage collector runs: 'scheduled' freezes every "
        "second what has survived (automatic collections then walk only younger "
        "objects) and collects everything every 5 minutes, or once a quarter of the "
        "connections have closed, at most once a minute, so that its passes over "
        "every connection rarely delay keepalive pings; 'python' leaves Python's "
        "own thresholds alone.",
    ],
    [
        "backlog",
        None,
        str(DEFAULT_BACKLOG),
        "Connections the kernel may queue before they are accepted, for tcp, "
        "tcp6, ssl and unix endpoints that do not set backlog= themselves "
        "(capped by net.core.somaxconn).",
    ],
]
