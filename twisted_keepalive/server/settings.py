"""
:class:`Settings`: what ``twistd wskeepalive`` was told, validated, and the
defaults that are the server's rather than the library's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from twisted_keepalive import KeepaliveMixin
from twisted_keepalive.core.config import DEFAULT_CLOSE_TIMEOUT, SETTING_NAMES

from .echo import EchoProtocol
from .gc import GC_SCHEDULED

__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_DRAIN_SPREAD",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_WORKER_TIMEOUT",
    "Settings",
]

DEFAULT_LISTEN = "tcp:8080"

#: ``listen()``'s usual backlog of 50 made 6,000 clients connecting at once
#: take 28 s (SYN retries); 4,096 took 2 s.  The kernel caps it at
#: ``net.core.somaxconn``.
DEFAULT_BACKLOG = 4096

#: Bytes; the same limit as ``websockets``' ``max_size``.  Autobahn's own
#: default is no limit at all: one peer could exhaust the server's memory.
DEFAULT_MAX_MESSAGE_SIZE = 2**20

#: Seconds over which a drain spreads its 1001s.  The clients of a stopping
#: server reconnect to the others at its connections / 5 s -- 4,000 a second
#: for a full process of 20,000, which a listen backlog of 4,096 absorbs --
#: while a stop with the default 10 s close timeout still ends within 15 s,
#: well inside the 30 s an orchestrator gives by default (Kubernetes'
#: terminationGracePeriodSeconds) even with a few seconds of --drain-grace.
DEFAULT_DRAIN_SPREAD = 5.0

#: Seconds from a client's connect to the end of its opening handshake:
#: Autobahn's own default.  A reconnect storm on a busy machine, or slow
#: clients, may want more (nginx waits 60 s for a request's header).
DEFAULT_HANDSHAKE_TIMEOUT = 5.0

#: Seconds; ``--worker-timeout``'s help text says why.
DEFAULT_WORKER_TIMEOUT = 30.0

#: Settings whose default under ``twistd wskeepalive`` is not the library's:
#: an operator who opens the server in a browser gets a demo page whose
#: heartbeats must be answered.  A value on the command line, or one the
#: ``--protocol`` class sets itself, still wins.
_SERVICE_DEFAULTS: Mapping[str, float | bool | None] = MappingProxyType({"browser_heartbeat": True})


@dataclass(frozen=True)
class Settings:
    """
    What ``twistd wskeepalive`` was told, validated.

    :ivar listen: endpoint descriptions, the backlog filled in.
    :ivar framing: ``"autobahn"`` or ``"twisted"`` (``twisted.web.websocket``).
    :ivar protocol: on Autobahn's framing, the ``WebSocketServerProtocol``
        subclass to serve, with :class:`~twisted_keepalive.KeepaliveMixin`
        among its bases (added to the operator's class if it lacked it); on
        Twisted's, a ``twisted.web.websocket`` protocol class with a
        ``buildProtocol(request)`` class method.
    :ivar keepalive: the keepalive settings given on the command line, by
        :func:`~twisted_keepalive.set_keepalive_options` name; for those not
        given, the Autobahn protocol class's attributes apply, or where it
        sets none, the service's defaults (``browser_heartbeat`` on) over the
        library's.
    :ivar allowed_origins: Autobahn ``allowedOrigins`` patterns; empty allows
        every origin.
    :ivar max_message_size: bytes; 0 for no limit.
    :ivar external_url: the ``ws://`` or ``wss://`` URL clients use, or ``None``.
    :ivar metrics: the endpoint to serve Prometheus metrics on, or ``None``.
    :ivar gc: the garbage-collector policy (see
        :class:`~twisted_keepalive.server.gc.GarbageCollection`).
    :ivar workers: processes to run (see :mod:`twisted_keepalive.server.workers`).
    :ivar drain_grace: seconds between ``/readyz`` turning 503 and the ports
        closing, at a stop.
    :ivar drain_spread: seconds over which a stop spreads its 1001s.
    :ivar demo: whether ``/`` serves the demo page.
    :ivar cors_origins: origins that may fetch ``/keepalive.js`` from another
        origin (``*`` for any).
    :ivar worker_timeout: seconds a worker's reactor may leave the parent's
        probes unanswered before it is killed and replaced; ``None`` never.
    :ivar access_log: whether every plain HTTP request (pages, probes,
        scrapes) is logged, at info level.
    :ivar handshake_timeout: seconds a client may take from its connect to
        the end of its opening handshake (its HTTP request included).
    :ivar connection_log: whether each WebSocket connection's opening and
        closing is logged, at info level.
    """

    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    framing: str = "autobahn"
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
    drain_grace: float = 0.0
    drain_spread: float = DEFAULT_DRAIN_SPREAD
    demo: bool = True
    cors_origins: tuple[str, ...] = ()
    worker_timeout: float | None = DEFAULT_WORKER_TIMEOUT
    access_log: bool = False
    connection_log: bool = True
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT

    def keepalive_given(self) -> dict[str, float | bool | None]:
        """
        The settings the factory overrides: those given on the command line,
        and the service's defaults for those the protocol class leaves alone.
        """
        defaults = {
            setting: value
            for setting, value in _SERVICE_DEFAULTS.items()
            if not self._class_sets(setting)
        }
        return {**defaults, **self.keepalive}

    def keepalive_in_force(self) -> dict[str, float | bool | None]:
        """Each keepalive setting as the connections will use it."""
        given = self.keepalive_given()
        source = self._settings_source()
        return {
            setting: given[setting] if setting in given else getattr(source, setting)
            for setting in SETTING_NAMES
        }

    def _settings_source(self) -> type[Any]:
        # A twisted.web.websocket protocol sets no keepalive settings: the
        # library's defaults (the mixin's) apply to it.
        return self.protocol if self.framing == "autobahn" else KeepaliveMixin

    def _class_sets(self, setting: str) -> bool:
        # KeepaliveMixin holds the library's defaults; a subclass that assigns
        # the setting has it in its own __dict__.
        return any(
            setting in vars(klass)
            for klass in self._settings_source().__mro__
            if klass is not KeepaliveMixin
        )

    @property
    def close_timeout(self) -> float:
        """Seconds a closing handshake may take."""
        return self.keepalive_in_force()["close_timeout"] or DEFAULT_CLOSE_TIMEOUT
