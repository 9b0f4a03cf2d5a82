"""
The command line of ``twistd wskeepalive``: :class:`Options`, which turns
what was given into :class:`~.settings.Settings` -- or into one usage line,
never a traceback.  The options' help texts (units and defaults) are in
:mod:`.option_list`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any, TypeVar

from twisted.python import usage

from . import framing, parsing
from .gc import GC_POLICIES
from .option_list import OPTION_PARAMETERS
from .pages import cors_origins
from .settings import DEFAULT_LISTEN, DEFAULT_MAX_MESSAGE_SIZE, Settings

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

    optParameters: list[list[Any]] = OPTION_PARAMETERS  # the shape usage.Options reads

    settings: Settings

    #: Set by a worker of ``--workers`` before parsing: its ``--listen``
    #: ports are its parent's, reserved with ``SO_REUSEPORT``, not in use.
    shares_ports = False

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
            listen=tuple(
                parsing.listen_description(d, backlog, shared=self.shares_ports) for d in listen
            ),
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
            access_log=parsing.on_off("access-log", self["access-log"]),
            connection_log=parsing.on_off("connection-log", self["connection-log"]),
            handshake_timeout=parsing.positive_seconds(
                "handshake-timeout", self["handshake-timeout"]
            ),
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
