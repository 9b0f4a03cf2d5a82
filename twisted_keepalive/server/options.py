"""
The command line of ``twistd wskeepalive``: every option with its help text
(units and defaults), and :class:`Options`, which turns what was given into
:class:`~.settings.Settings` -- or into one usage line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any, TypeVar

from twisted.python import usage

from . import framing, parsing
from .gc import GC_POLICIES, GC_SCHEDULED
from .pages import cors_origins
from .settings import (
    DEFAULT_BACKLOG,
    DEFAULT_DRAIN_SPREAD,
    DEFAULT_LISTEN,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_WORKER_TIMEOUT,
    Settings,
)

__all__ = ["Options"]

#: The command-line name of each keepalive setting given in seconds.
_KEEPALIVE_OPTIONS = {
    "ping-interval": "ping_interval",
    "ping-timeout": "ping_timeout",
    "close-timeout": "close_timeout",
}


_Method = TypeVar("_Method", bound=Callable[..., None])


def _one_paragraph(method: _Method) -> _Method:
    # usage.Options shows an opt_ method's docstring as its --help text, and
    # would keep the docstring's line breaks and indentation in it.
    method.__doc__ = " ".join((method.__doc__ or "").split())
    return method


class Options(usage.Options):
    """The options of ``twistd wskeepalive``; :attr:`settings` once parsed."""

    synopsis = "[options]"
    longdesc = (
        "Runs a WebSocket server that pings every client and fails the connections of "
        "clients that stop answering (close code 1011). It echoes messages unless "
        "--protocol names your own protocol, of Autobahn's API or, with --framing twisted, "
        "of twisted.web.websocket's. SIGTERM or SIGINT drains it: /readyz "
        "turns 503, the server keeps serving for --drain-grace, closes its ports, sends every "
        "connection 1001 'going away' spread over --drain-spread, waits at most "
        "--close-timeout, and exits 0; a second signal skips the rest of the grace and spread."
    )

    optParameters: list[list[Any]] = [  # noqa: RUF012 -- the shape usage.Options reads
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

    settings: Settings

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []
        self["allowed-origin"] = []
        self["cors-origin"] = []
        self._failed = False

    @_one_paragraph
    def opt_listen(self, description: str) -> None:
        """
        Listen on this Twisted endpoint: tcp:8080, tcp:9000:interface=127.0.0.1,
        ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/run/ws.sock. Repeat
        to listen on several. [default: tcp:8080]
        """
        self["listen"].append(description)

    @_one_paragraph
    def opt_allowed_origin(self, pattern: str) -> None:
        """
        Accept browsers only from this origin, matched as scheme://host:port
        (the port always present, e.g. https://app.example.com:443), * as a
        wildcard (https://*.example.com:*); repeat to allow several. Clients
        that send no Origin header are always accepted. [default: any origin]
        """
        self["allowed-origin"].append(pattern)

    @_one_paragraph
    def opt_cors_origin(self, origin: str) -> None:
        """
        Let pages of this origin (https://app.example.com, or * for any) load
        /keepalive.js from this server (Access-Control-Allow-Origin); repeat
        to allow several. [default: same origin only]
        """
        self["cors-origin"].append(origin)

    def parseOptions(self, options: list[str] | None = None) -> None:
        try:
            super().parseOptions(options)  # type: ignore[no-untyped-call]
        except usage.UsageError:
            self._failed = True
            raise

    def getUsage(self, width: int | None = None) -> str:
        if self._failed:
            # twistd prints the usage above the error message: a one-line hint
            # keeps the message from drowning under the whole option list.
            return "Run with --help for the options, with units and defaults.\n"
        return super().getUsage(width)

    def postOptions(self) -> None:
        listen = self["listen"] or [DEFAULT_LISTEN]
        backlog = parsing.whole_number("backlog", self["backlog"], minimum=1)
        workers = parsing.worker_count(self["workers"], listen)
        keepalive: dict[str, float | bool | None] = {
            setting: parsing.seconds(option, self[option], allow_off=setting != "close_timeout")
            for option, setting in _KEEPALIVE_OPTIONS.items()
            if self[option] is not None
        }
        if self["browser-heartbeat"] is not None:
            keepalive["browser_heartbeat"] = parsing.on_off(
                "browser-heartbeat", self["browser-heartbeat"]
            )
        chosen = framing.chosen(self["framing"])
        framing.refuse_autobahn_only(chosen, self)
        self.settings = Settings(
            listen=tuple(parsing.listen_description(d, backlog) for d in listen),
            framing=chosen,
            protocol=framing.served_protocol(chosen, self["protocol"]),
            keepalive=MappingProxyType(keepalive),
            allowed_origins=tuple(self["allowed-origin"]),
            max_message_size=parsing.whole_number(
                "max-message-size",
                str(DEFAULT_MAX_MESSAGE_SIZE)
                if self["max-message-size"] is None
                else self["max-message-size"],
                minimum=0,
            ),
            external_url=parsing.external_url(self["external-url"]),
            metrics=parsing.metrics_endpoint(self["metrics"]),
            gc=parsing.choice("gc", self["gc"], GC_POLICIES),
            workers=workers,
            drain_grace=parsing.seconds_or_zero("drain-grace", self["drain-grace"]),
            drain_spread=parsing.seconds_or_zero("drain-spread", self["drain-spread"]),
            demo=parsing.on_off("demo", self["demo"]),
            cors_origins=parsing.checked(cors_origins, self["cors-origin"]),
            worker_timeout=parsing.worker_timeout(self["worker-timeout"]),
        )

    def worker_arguments(self) -> list[str]:
        """
        The options as a worker of ``--workers`` takes them: all those given,
        but ``--listen``, ``--metrics`` and ``--workers``, which the parent
        sets for each worker, and ``--worker-timeout``, the parent's own.
        """
        arguments = []
        for name, *_ in self.optParameters:
            if name not in ("metrics", "workers", "worker-timeout") and self[name] is not None:
                arguments += [f"--{name}", str(self[name])]
        for repeated in ("allowed-origin", "cors-origin"):
            for value in self[repeated]:
                arguments += [f"--{repeated}", value]
        return arguments
