"""
What ``twistd wskeepalive`` builds: a WebSocket server with keepalive, from
command-line options.

Follow ``--ping-interval`` from the command line to the pings: :class:`Options`
turns the text into validated :class:`Settings` (a wrong value is a usage
error, never a traceback); :func:`build_service` hands ``Settings.keepalive``
to :func:`~twisted_keepalive.set_keepalive_options` on the factory; each
connection's :class:`~twisted_keepalive.KeepaliveMixin` reads it when the
connection opens and schedules its pings from there.

A browser that GETs the server without asking for a WebSocket gets the
browser module at ``/keepalive.js`` and, at ``/``, a demo page that shows the
connection's state and latency (:meth:`_ServedConnection.sendServerStatus`);
the service answers that module's heartbeats unless ``--browser-heartbeat off``.

Shutdown (SIGTERM or SIGINT under twistd): :class:`WebSocketService` stops
listening, sends Close 1001 "going away" to every connection, waits for all
of them to be lost for at most the close timeout, aborts the rest, and lets
twistd exit 0.
"""

from __future__ import annotations

import functools
import gc
import socket
import sys
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.util import parse_url
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.reflect import namedAny

from ._config import DEFAULT_CLOSE_TIMEOUT, SETTING_NAMES, validate_seconds
from ._heartbeat import Timeout
from ._mixin import KeepaliveMixin, set_keepalive_options
from ._stats import collect_stats

__all__ = [
    "EchoProtocol",
    "Options",
    "Settings",
    "WebSocketService",
    "build_service",
    "makeService",
]

_log = Logger(namespace="twisted_keepalive")

DEFAULT_LISTEN = "tcp:8080"

#: ``listen()``'s usual backlog of 50 made 6,000 clients connecting at once
#: take 28 s (SYN retries); 4,096 took 2 s.  The kernel caps it at
#: ``net.core.somaxconn``.
DEFAULT_BACKLOG = 4096

#: ``--gc`` policies: see :class:`GarbageCollection`.
GC_SCHEDULED = "scheduled"
GC_PYTHON = "python"
GC_POLICIES = (GC_SCHEDULED, GC_PYTHON)

#: Seconds between the freezes of ``--gc scheduled``: whatever has lived
#: this long is never walked by an automatic collection again.
GC_FREEZE_EVERY = 1.0

#: Seconds: ``--gc scheduled`` collects everything at least this often...
GC_FULL_PERIOD = 300.0

#: ...and at most this often, however many connections close.  A full
#: collection walks every object of every connection (0.3-0.6 s at 19,800
#: connections, measured), so this caps the time the reactor spends in
#: them at about 1 %: the share of Pings that may be late without moving
#: the 99th percentile of ping lateness.
GC_FULL_MIN_SPACING = 60.0

#: Upper bounds (seconds) of the garbage-collector pause histogram.
GC_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: Bytes; the same limit as ``websockets``' ``max_size``.  Autobahn's own
#: default is no limit at all: one peer could exhaust the server's memory.
DEFAULT_MAX_MESSAGE_SIZE = 2**20

#: The endpoint types whose string syntax takes ``backlog=``.
_BACKLOG_ENDPOINT_TYPES = frozenset({"tcp", "tcp6", "ssl", "unix"})

#: Aborted connections report ``connectionLost`` within a reactor turn; this
#: only bounds a transport that never does.
_ABORT_GRACE = 1.0

GOING_AWAY_CODE = 1001
GOING_AWAY_REASON = "going away"

#: Settings whose default under ``twistd wskeepalive`` is not the library's:
#: an operator who opens the server in a browser gets a demo page whose
#: heartbeats must be answered.  A value on the command line, or one the
#: ``--protocol`` class sets itself, still wins.
_SERVICE_DEFAULTS: Mapping[str, float | bool | None] = MappingProxyType({"browser_heartbeat": True})

#: What a plain HTTP GET (no WebSocket upgrade) may fetch: path -> (file in
#: ``twisted_keepalive/static``, Content-Type).  Anything else is a 404.
_STATIC_FILES = {
    "/": ("demo.html", "text/html; charset=utf-8"),
    "/keepalive.js": ("keepalive.js", "application/javascript; charset=utf-8"),
}

_PLAIN_TEXT = "text/plain; charset=utf-8"

#: The command-line name of each keepalive setting given in seconds.
_KEEPALIVE_OPTIONS = {
    "ping-interval": "ping_interval",
    "ping-timeout": "ping_timeout",
    "close-timeout": "close_timeout",
}

# Typed names for the few Twisted APIs that have no annotations, so that the
# rest of the module is checked by mypy --strict.
_server_from_string: Callable[[Any, str], IStreamServerEndpoint] = endpoints.serverFromString
_named_any: Callable[[str], object] = namedAny
_listener: Callable[[IStreamServerEndpoint, Any], StreamServerEndpointService] = (
    StreamServerEndpointService
)


class EchoProtocol(KeepaliveMixin, WebSocketServerProtocol):  # type: ignore[misc]
    """The default protocol: sends every text or binary message back as it came."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


# -- options ------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """
    What ``twistd wskeepalive`` was told, validated.

    :ivar listen: endpoint descriptions, the backlog filled in.
    :ivar protocol: the ``WebSocketServerProtocol`` subclass to serve, with
        :class:`~twisted_keepalive.KeepaliveMixin` among its bases (added to
        the operator's class if it lacked it).
    :ivar keepalive: the keepalive settings given on the command line, by
        :func:`~twisted_keepalive.set_keepalive_options` name; for those not
        given, the protocol class's attributes apply, or where it sets none,
        the service's defaults (``browser_heartbeat`` on) over the library's.
    :ivar allowed_origins: Autobahn ``allowedOrigins`` patterns; empty allows
        every origin.
    :ivar max_message_size: bytes; 0 for no limit.
    :ivar external_url: the ``ws://`` or ``wss://`` URL clients use, or ``None``.
    :ivar metrics: the endpoint to serve Prometheus metrics on, or ``None``.
    :ivar gc: the garbage-collector policy, :data:`GC_SCHEDULED` or
        :data:`GC_PYTHON` (see :class:`GarbageCollection`).
    :ivar workers: processes to run (see :mod:`twisted_keepalive._workers`).
    """

    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    protocol: type[Any] = EchoProtocol
    keepalive: Mapping[str, float | bool | None] = field(
        default_factory=lambda: MappingProxyType({})
    )
    allowed_origins: tuple[str, ...] = ()
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    external_url: str | None = None
    metrics: str | None = None
    gc: str = GC_SCHEDULED
    workers: int = 1

    def keepalive_given(self) -> dict[str, float | bool | None]:
        """
        The settings the factory overrides: those given on the command line,
        and the service's defaults for those the protocol class leaves alone.
        """
        defaults = {
            setting: value
            for setting, value in _SERVICE_DEFAULTS.items()
            if not _class_sets(self.protocol, setting)
        }
        return {**defaults, **self.keepalive}

    def keepalive_in_force(self) -> dict[str, float | bool | None]:
        """Each keepalive setting as the connections will use it."""
        given = self.keepalive_given()
        return {
            setting: given[setting] if setting in given else getattr(self.protocol, setting)
            for setting in SETTING_NAMES
        }

    @property
    def close_timeout(self) -> float:
        """Seconds a closing handshake may take."""
        return self.keepalive_in_force()["close_timeout"] or DEFAULT_CLOSE_TIMEOUT


def _class_sets(protocol: type[Any], setting: str) -> bool:
    # KeepaliveMixin holds the library's defaults; a subclass that assigns the
    # setting has it in its own __dict__.
    return any(setting in vars(klass) for klass in protocol.__mro__ if klass is not KeepaliveMixin)


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
        "--protocol names your own Autobahn protocol. SIGTERM or SIGINT closes every "
        "connection with 1001 'going away', waits at most --close-timeout, and exits 0."
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
            "browser-heartbeat",
            None,
            None,
            "'on' to answer the heartbeats of the browser module served at /keepalive.js "
            "(text messages starting with NUL 'wsk1 ping') and keep them from the "
            "protocol's onMessage; 'off' to pass them on as ordinary messages. "
            "[default: on, or the browser_heartbeat of a --protocol that sets it]",
        ],
        [
            "protocol",
            None,
            "twisted_keepalive._service.EchoProtocol",
            "Dotted name of the autobahn.twisted.websocket.WebSocketServerProtocol "
            "subclass to serve; KeepaliveMixin is added if the class lacks it.",
        ],
        [
            "max-message-size",
            None,
            str(DEFAULT_MAX_MESSAGE_SIZE),
            "Largest message accepted, in bytes (0: no limit); a larger one fails "
            "the connection with 1009.",
        ],
        [
            "external-url",
            None,
            None,
            "The ws:// or wss:// URL clients use to reach this server (behind a proxy, "
            "the proxy's), given to Autobahn's factory: the protocol sees it as "
            "factory.url. [default: none]",
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
            "With --metrics, one endpoint serves every worker's metrics, labelled by worker.",
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
        backlog = _whole_number("backlog", self["backlog"], minimum=1)
        workers = _workers(self["workers"], self["listen"] or [DEFAULT_LISTEN])
        keepalive: dict[str, float | bool | None] = {
            setting: _seconds(option, self[option], allow_off=setting != "close_timeout")
            for option, setting in _KEEPALIVE_OPTIONS.items()
            if self[option] is not None
        }
        if self["browser-heartbeat"] is not None:
            keepalive["browser_heartbeat"] = _on_off("browser-heartbeat", self["browser-heartbeat"])
        self.settings = Settings(
            listen=tuple(
                _listen_description(description, backlog)
                for description in self["listen"] or [DEFAULT_LISTEN]
            ),
            protocol=_server_protocol(self["protocol"]),
            keepalive=MappingProxyType(keepalive),
            allowed_origins=tuple(self["allowed-origin"]),
            max_message_size=_whole_number("max-message-size", self["max-message-size"], minimum=0),
            external_url=_external_url(self["external-url"]),
            metrics=_metrics_endpoint(self["metrics"]),
            gc=_choice("gc", self["gc"], GC_POLICIES),
            workers=workers,
        )

    def worker_arguments(self) -> list[str]:
        """
        The options as a worker of ``--workers`` takes them: all those given,
        but ``--listen``, ``--metrics`` and ``--workers``, which the parent
        sets for each worker.
        """
        arguments = []
        for name, *_ in self.optParameters:
            if name not in ("metrics", "workers") and self[name] is not None:
                arguments += [f"--{name}", str(self[name])]
        for origin in self["allowed-origin"]:
            arguments += ["--allowed-origin", origin]
        return arguments


def _seconds(option: str, text: str, *, allow_off: bool) -> float | None:
    if allow_off and text.strip().lower() == "off":
        return None
    value: object
    try:
        value = float(text)
    except ValueError:
        value = text  # for validate_seconds to name in its message
    try:
        return validate_seconds(f"--{option}", value, allow_none=False)
    except (TypeError, ValueError) as e:
        raise usage.UsageError(f"{e}{'; off disables it' if allow_off else ''}") from None


def _on_off(option: str, text: str) -> bool:
    switch = text.strip().lower()
    if switch not in ("on", "off"):
        raise usage.UsageError(f"--{option} must be on or off, not {text!r}")
    return switch == "on"


def _workers(text: str, listen: list[str]) -> int:
    workers = _whole_number("workers", text, minimum=1)
    if workers == 1:
        return workers
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise usage.UsageError(
            "--workers needs Linux, whose SO_REUSEPORT spreads connections over the workers"
        )
    from ._workers import listen_problem

    for description in listen:
        problem = listen_problem(description)
        if problem is not None:
            raise usage.UsageError(problem)
    return workers


def _choice(option: str, text: str, choices: tuple[str, ...]) -> str:
    choice = text.strip().lower()
    if choice not in choices:
        raise usage.UsageError(f"--{option} must be one of {', '.join(choices)}, not {text!r}")
    return choice


def _metrics_endpoint(description: str | None) -> str | None:
    if description is None:
        return None
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise usage.UsageError(
            "--metrics needs prometheus_client: pip install 'twisted-keepalive[metrics]'"
        ) from None
    from twisted.internet import reactor

    try:
        _server_from_string(reactor, description)
    except Exception as e:
        raise usage.UsageError(f"--metrics {description!r} is not a usable endpoint: {e}") from None
    return description


def _whole_number(option: str, text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        expected = "a positive whole number" if minimum > 0 else "a whole number, 0 or more"
        raise usage.UsageError(f"--{option} must be {expected}, not {text!r}")
    return value


def _listen_description(description: str, backlog: int) -> str:
    full = _with_backlog(description, backlog)
    # Building the endpoint parses the string and loads TLS keys and
    # certificates: a typo fails here, as a usage error, not at startup.
    from twisted.internet import reactor

    try:
        _server_from_string(reactor, full)
    except ImportError as e:
        hint = (
            " (ssl endpoints need pyOpenSSL: pip install twisted[tls])"
            if e.name == "OpenSSL"
            else ""
        )
        raise usage.UsageError(f"--listen {description!r}: {e}{hint}") from None
    except Exception as e:
        # Endpoint parsers, plugins included, raise whatever they like:
        # ValueError, TypeError, KeyError, OSError, OpenSSL errors...
        raise usage.UsageError(f"--listen {description!r} is not a usable endpoint: {e}") from None
    return full


def _with_backlog(description: str, backlog: int) -> str:
    kind, *fields = _endpoint_fields(description)
    if kind not in _BACKLOG_ENDPOINT_TYPES or any(f.startswith("backlog=") for f in fields):
        return description
    return f"{description}:backlog={backlog}"


def _endpoint_fields(description: str) -> Iterator[str]:
    # Endpoint strings separate fields with ":" and escape a literal one as "\:".
    current = ""
    escaped = False
    for char in description:
        if char == ":" and not escaped:
            yield current
            current = ""
        else:
            current += char
        escaped = char == "\\" and not escaped
    yield current


def _server_protocol(dotted: str) -> type[Any]:
    try:
        found = _named_any(dotted)
    except Exception as e:
        # Importing an operator's module can raise anything at all.
        raise usage.UsageError(
            f"--protocol {dotted!r} cannot be imported: {type(e).__name__}: {e}"
        ) from None
    if not (isinstance(found, type) and issubclass(found, WebSocketServerProtocol)):
        raise usage.UsageError(
            f"--protocol {dotted!r} must name a subclass of "
            f"autobahn.twisted.websocket.WebSocketServerProtocol, not {found!r}"
        )
    if issubclass(found, KeepaliveMixin):
        return found
    return type(found.__name__, (KeepaliveMixin, found), {"__qualname__": found.__qualname__})


def _external_url(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        parse_url(url)
    except Exception as e:
        raise usage.UsageError(
            f"--external-url must be a ws:// or wss:// URL without a query, not {url!r} ({e})"
        ) from None
    return url


# -- the server -----------------------------------------------------------------


class _ServedConnection:
    """
    Connection logging and tracking for the service.

    It comes first among the served class's bases, so protocols that override
    ``onOpen`` / ``onClose`` / ``connectionLost`` without calling ``super()``
    cannot skip it.
    """

    if TYPE_CHECKING:
        # Provided by the Autobahn protocol and the mixin it goes with.
        factory: _ServerFactory
        transport: Any
        peer: str
        state: int
        latency: float
        keepalive_timeout: Timeout | None
        http_request_path: str

        def sendData(self, data: bytes) -> None: ...
        def sendCloseFrame(
            self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False
        ) -> None: ...

    _served_opened = False
    _served_closed: tuple[int | None, str | None, bool] = (None, None, False)

    def connectionMade(self) -> None:
        self.factory.connections.add(self)
        super().connectionMade()  # type: ignore[misc]

    def _onOpen(self) -> None:
        self._served_opened = True
        _log.info("WebSocket connection from {peer} opened", peer=self.peer, keepalive_event="open")
        super()._onOpen()  # type: ignore[misc]

    def _onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._served_closed = (code, reason, wasClean)
        super()._onClose(wasClean, code, reason)  # type: ignore[misc]

    def connectionLost(self, reason: Failure) -> None:
        try:
            super().connectionLost(reason)  # type: ignore[misc]
        finally:
            if self._served_opened:
                code, close_reason, clean = self._served_closed
                timeout = self.keepalive_timeout
                _log.info(
                    "WebSocket connection from {peer} closed: code {code}, "
                    "reason {reason!r}, last latency {latency:.3f} s",
                    peer=self.peer,
                    code=code,
                    reason=close_reason or "",
                    clean=clean,
                    latency=self.latency,
                    # Set when the heartbeat failed the connection.
                    cause=None if timeout is None else timeout.cause.value,
                    keepalive_event="close",
                )
            self.factory.connection_lost(self)

    def going_away(self) -> None:
        """Start closing this connection because the server is stopping."""
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            # sendClose() accepts only 1000 and 3000-4999; sendCloseFrame()
            # sends 1001 and starts the closing handshake all the same.
            self.sendCloseFrame(
                code=GOING_AWAY_CODE, reasonUtf8=GOING_AWAY_REASON.encode(), isReply=False
            )
        elif self.state == WebSocketServerProtocol.STATE_CONNECTING:
            # No WebSocket yet, so no Close frame to send.
            self.transport.loseConnection()

    def abort(self) -> None:
        self.transport.abortConnection()

    def sendServerStatus(self, redirectUrl: str | None = None, redirectAfter: int = 0) -> None:
        """
        Answer a plain HTTP GET (no WebSocket upgrade) with a file from
        ``static/``, by path, or 404.

        Autobahn calls this instead of its own status page (``webStatus``, on
        by default) and closes the connection after it.
        """
        served = _STATIC_FILES.get(self.http_request_path)
        if served is None:
            status, content_type, body = "404 Not Found", _PLAIN_TEXT, b"not found\n"
        else:
            name, content_type = served
            status, body = "200 OK", _static_file(name)
        server = self.factory.server
        head = [
            f"HTTP/1.1 {status}",
            *([f"Server: {server}"] if server else []),
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            # The page and the module change with the package: always revalidate.
            "Cache-Control: no-cache",
            "X-Content-Type-Options: nosniff",
            "Connection: close",
        ]
        self.sendData("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)


@functools.cache
def _static_file(name: str) -> bytes:
    # Read once per process, on first request, from the installed package.
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _served_class(protocol: type[Any]) -> type[Any]:
    # The operator's class name, so that log lines name it.
    return type(
        protocol.__name__, (_ServedConnection, protocol), {"__qualname__": protocol.__qualname__}
    )


class _ServerFactory(WebSocketServerFactory):
    """An Autobahn server factory that knows its connections, for shutdown."""

    def __init__(self, url: str | None, reactor: Any) -> None:
        super().__init__(url, reactor=reactor)  # type: ignore[no-untyped-call]
        self.connections: set[_ServedConnection] = set()
        #: Connections lost since the start: what a full collection may free.
        self.lost = 0
        self._waiters: list[Deferred[None]] = []

    def connection_lost(self, connection: _ServedConnection) -> None:
        self.connections.discard(connection)
        self.lost += 1
        if not self.connections:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def when_all_lost(self) -> Deferred[None]:
        """
        A ``Deferred`` that fires once no connection is left; cancelling it
        stops waiting.
        """
        if not self.connections:
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter


def exit_zero_after_drain(reactor: Any) -> None:
    """Let twistd exit 0 after a shutdown that drained every connection."""
    # twistd and twist re-raise the signal that stopped the reactor, so the
    # process would end "killed by SIGTERM" (status 143) after a clean
    # shutdown; a drained shutdown is a success.
    if getattr(reactor, "_exitSignal", None) is not None:
        reactor._exitSignal = None


class WebSocketService(MultiService):
    """
    The endpoints of one factory, and its graceful shutdown: stop listening,
    send Close 1001 to every connection, wait at most ``close_timeout``
    seconds for them to go, then abort the rest.
    """

    def __init__(self, factory: _ServerFactory, close_timeout: float, reactor: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.factory = factory
        self.close_timeout = close_timeout
        self._reactor = reactor

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._shut_down())

    async def _shut_down(self) -> None:
        await super().stopService()  # type: ignore[no-untyped-call]
        connections = self.factory.connections
        if connections:
            _log.info(
                "closing {count} connections with {code} {reason!r}",
                count=len(connections),
                code=GOING_AWAY_CODE,
                reason=GOING_AWAY_REASON,
                keepalive_event="shutdown",
            )
            for connection in list(connections):
                connection.going_away()
            if not await self._all_lost_within(self.close_timeout):
                _log.warn(
                    "aborting {count} connections still open {close_timeout} s after the 1001",
                    count=len(connections),
                    close_timeout=self.close_timeout,
                    keepalive_event="shutdown_abort",
                )
                for connection in list(connections):
                    connection.abort()
                await self._all_lost_within(_ABORT_GRACE)
        exit_zero_after_drain(self._reactor)

    async def _all_lost_within(self, seconds: float) -> bool:
        try:
            await self.factory.when_all_lost().addTimeout(seconds, self._reactor)
        except TimeoutError:
            return False
        return True


# -- garbage collection -----------------------------------------------------------


class GarbageCollection(Service):
    """
    Python's cyclic garbage collector run the way a server of many long-lived
    connections needs, and a record of how long each of its passes stopped
    the reactor.

    Python collects its oldest generation whenever the objects that reached
    it since the last time exceed a quarter of it, and that walks every
    tracked object: every connection's, 0.3-0.6 s at 19,800 connections.
    Objects that outlive the young collections reach that quarter quickly:
    with one timer per connection per Ping living an interval (what the
    mixin had before its timer wheel; what many applications do), 19,800
    connections pinged every 5 s, Python's defaults collected everything 3
    times in 120 s and 1 % of the Pings left more than 50 ms late; under
    this policy, never, and none did.  The collector cannot simply be
    switched off: a closed Autobahn connection is cyclic garbage (its
    ``is_closed`` Deferred holds the protocol), which only a collection
    frees.

    With ``policy=GC_SCHEDULED``:

    - every :data:`GC_FREEZE_EVERY` seconds, everything alive is frozen
      (:func:`gc.freeze`, constant time): Python's automatic collections
      keep running with its own thresholds, but only over what is younger --
      they stay short, and short-lived cycles are still freed at once;
    - every :data:`GC_FULL_PERIOD` seconds -- or once connections amounting
      to a quarter of those open have closed, but never twice within
      :data:`GC_FULL_MIN_SPACING` seconds -- everything is unfrozen and
      collected: the one pass that frees closed connections, at a bounded
      rate.

    ``policy=GC_PYTHON`` leaves the collector alone.  Either way the pauses
    are recorded (:attr:`pause_counts`), for ``/metrics``.

    :param policy: :data:`GC_SCHEDULED` or :data:`GC_PYTHON`.
    :param reactor: schedules the freezes and collections.
    :param connections: how many connections are open now.
    :param closed: how many connections have closed since the start.
    :ivar pause_counts: per generation, how many collections fell in each
        bucket of :data:`GC_PAUSE_BUCKETS` (not cumulative; one extra slot).
    :ivar pause_sums: per generation, seconds spent collecting.
    :ivar scheduled: full collections this policy ran.
    """

    def __init__(
        self,
        policy: str,
        reactor: Any,
        connections: Callable[[], int],
        closed: Callable[[], int],
    ) -> None:
        self.policy = policy
        self._reactor = reactor
        self._connections = connections
        self._closed = closed
        self._call: Any = None
        self._started_at = 0.0
        self._full_at = 0.0
        self._closed_at_full = 0
        self.pause_counts = {g: [0] * (len(GC_PAUSE_BUCKETS) + 1) for g in range(3)}
        self.pause_sums = dict.fromkeys(range(3), 0.0)
        self.scheduled = 0

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        gc.callbacks.append(self._observe)
        if self.policy == GC_SCHEDULED:
            # Once the reactor runs (twistd starts services before, and only
            # then handles SIGTERM): start-up is over, collect it and freeze it.
            self._call = self._reactor.callLater(0, self._first_collection)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self.policy == GC_SCHEDULED:
            # Shutting down: what closes now is freed the usual way.
            gc.unfreeze()

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        # Called by the collector itself at the start and the end of every
        # pass: a clock read and a few integer updates.
        if phase == "start":
            self._started_at = time.perf_counter()
            return
        pause = time.perf_counter() - self._started_at
        generation = info["generation"]
        self.pause_sums[generation] += pause
        self.pause_counts[generation][bisect_left(GC_PAUSE_BUCKETS, pause)] += 1

    def _first_collection(self) -> None:
        self._collect_everything()
        self._call = self._reactor.callLater(GC_FREEZE_EVERY, self._tick)

    def _tick(self) -> None:
        since = time.monotonic() - self._full_at
        closed = self._closed() - self._closed_at_full
        if since >= GC_FULL_PERIOD or (
            since >= GC_FULL_MIN_SPACING and closed > self._connections() // 4
        ):
            self._collect_everything()
        else:
            gc.freeze()
        self._call = self._reactor.callLater(GC_FREEZE_EVERY, self._tick)

    def _collect_everything(self) -> None:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.scheduled += 1
        self._full_at = time.monotonic()
        self._closed_at_full = self._closed()


def _gc_collector(collection: GarbageCollection) -> Any:
    # Only with --metrics, so prometheus_client is imported only then.
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    class Collector:
        def collect(self) -> Iterator[Any]:
            pauses = HistogramMetricFamily(
                "twisted_keepalive_gc_pause_seconds",
                "How long each pass of Python's garbage collector stopped the reactor, "
                "by generation (2: a full collection), seconds.",
                labels=["generation"],
            )
            for generation, counts in collection.pause_counts.items():
                bounds = (*map(repr, GC_PAUSE_BUCKETS), "+Inf")
                cumulative = 0
                buckets: list[tuple[str, float]] = []
                for bound, count in zip(bounds, counts, strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative))
                pauses.add_metric(
                    [str(generation)], buckets, sum_value=collection.pause_sums[generation]
                )
            yield pauses
            yield CounterMetricFamily(
                "twisted_keepalive_gc_scheduled_collections",
                "Full collections run by --gc scheduled.",
                value=collection.scheduled,
            )

    return Collector()


def build_service(
    settings: Settings,
    reactor: Any,
    endpoint: Callable[[str], IStreamServerEndpoint] | None = None,
) -> WebSocketService:
    """
    The server ``settings`` describe: one factory serving ``settings.protocol``
    on every endpoint, and the shutdown that closes its connections.

    :param endpoint: makes the endpoint of each ``settings.listen``
        description; by default Twisted's ``serverFromString`` (a worker of
        ``--workers`` listens with ``SO_REUSEPORT`` instead).
    """
    close_timeout = settings.close_timeout
    factory = _ServerFactory(settings.external_url, reactor)
    factory.protocol = _served_class(settings.protocol)
    factory.setProtocolOptions(  # type: ignore[no-untyped-call]
        allowedOrigins=list(settings.allowed_origins) or ["*"],
        maxMessagePayloadSize=settings.max_message_size,
        # Autobahn's closing-handshake timer runs on txaio's batched timer,
        # which truncates its deadline to a whole second: it fires up to 1 s
        # early (at once, for its 1 s default).  One second more keeps it from
        # ever cutting a handshake short; the keepalive's abort and the
        # shutdown's bound run on callLater and keep close_timeout exactly.
        closeHandshakeTimeout=close_timeout + 1.0,
        # Send the Close frame with its code (1009 message too big, 1002
        # protocol error) before closing, rather than drop TCP unexplained.
        failByDrop=False,
    )
    set_keepalive_options(factory, **settings.keepalive_given())
    service = WebSocketService(factory, close_timeout, reactor)
    collection = GarbageCollection(
        settings.gc, reactor, lambda: len(factory.connections), lambda: factory.lost
    )
    if settings.metrics is not None:
        from .metrics import MetricsService

        metrics = MetricsService(settings.metrics, [collect_stats(factory)], reactor)
        metrics.registry.register(_gc_collector(collection))
        service.addService(metrics)  # type: ignore[no-untyped-call]
    for description in settings.listen:
        made = endpoint(description) if endpoint else _server_from_string(reactor, description)
        listener = _listener(made, factory)
        # A port that cannot be bound stops twistd at startup instead of
        # leaving a server that listens nowhere.
        listener._raiseSynchronously = True
        service.addService(listener)  # type: ignore[no-untyped-call]
    # Last: what start-up made (the listening ports included) gets frozen.
    service.addService(collection)  # type: ignore[no-untyped-call]
    _log.info(
        "serving {protocol} on {listen}; ping_interval {ping_interval}, "
        "ping_timeout {ping_timeout}, close_timeout {close_timeout} (seconds)",
        protocol=settings.protocol.__qualname__,
        listen=", ".join(settings.listen),
        metrics=settings.metrics,
        keepalive_event="start",
        **settings.keepalive_in_force(),
    )
    return service


def makeService(options: Options) -> MultiService:
    """``IServiceMaker.makeService`` for ``twistd wskeepalive``."""
    from twisted.internet import reactor

    if options.settings.workers > 1:
        from ._workers import WorkersService

        return WorkersService(options.settings, options.worker_arguments(), reactor)
    return build_service(options.settings, reactor)
