"""
:func:`with_keepalive`: the one entry point.  It wraps the application's
``twisted.web.websocket`` factory -- server or client -- and returns one
usable wherever the original was.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime

from ..core.config import (
    DEFAULT_BROWSER_HEARTBEAT,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_FIRST_PING_SPREAD,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    KeepaliveConfig,
    validate_setting,
)
from ..core.stats import KeepaliveStats
from ..glue.record import SharedRecord
from .protocol import KeepaliveProtocol


class KeepaliveFactory:
    """
    A ``WebSocketServerFactory`` and ``WebSocketClientFactory`` whose
    protocols get keepalive: made by :func:`with_keepalive`.  Attributes it
    does not have itself are the wrapped factory's.

    :ivar wrapped: the application's factory.
    :ivar config: the settings of every connection it builds.
    :ivar clock: the ``IReactorTime`` given to :func:`with_keepalive` (a
        ``task.Clock`` in tests), or ``None``: then the reactor schedules and
        the monotonic clock gives the time.
    :ivar reactor: the reactor for ``clock=None``; ``None`` for the global one.
    :ivar keepalive_stats: where its connections count, once
        :func:`collect_stats <twisted_keepalive.collect_stats>` attached it;
        else ``None``.
    """

    keepalive_stats: KeepaliveStats | None = None

    def __init__(
        self, wrapped: Any, config: KeepaliveConfig, clock: Any, reactor: Any
    ) -> None:
        self.wrapped = wrapped
        self.config = config
        self.clock = clock
        self.reactor = reactor
        #: The timer wheels its connections share, one per clock.
        self.record = SharedRecord()

    def buildProtocol(self, addr: Any) -> KeepaliveProtocol | None:
        """
        The application's protocol for ``addr`` -- the ``Request`` of a
        server-side connection, the URL (``str``) of a client-side one --
        with keepalive around it; ``None`` if the application's factory
        refused the connection.
        """
        application = self.wrapped.buildProtocol(addr)
        if application is None:
            return None
        request = None if isinstance(addr, str) else addr
        return KeepaliveProtocol(application, self, request)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "wrapped":
            raise AttributeError(name)
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"with_keepalive({self.wrapped!r}, {self.config!r})"


def with_keepalive(
    factory: Any,
    *,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
    first_ping_spread: float = DEFAULT_FIRST_PING_SPREAD,
    browser_heartbeat: bool = DEFAULT_BROWSER_HEARTBEAT,
    clock: IReactorTime | None = None,
    reactor: Any = None,
) -> KeepaliveFactory:
    """
    Keepalive and heartbeat for every connection ``factory`` builds::

        resource = WebSocketResource(with_keepalive(ChatFactory(), ping_interval=10.0))
        protocol = await endpoint.connect(with_keepalive(FeedFactory()))

    The application's protocol is unchanged; the transport it gets in
    ``negotiationStarted`` is a
    :class:`KeepaliveTransport <twisted_keepalive.web.KeepaliveTransport>`,
    with ``latency`` and a ``ping()`` that returns a ``Deferred``.  If it has
    them, its ``latencyMeasured(latency)`` is called with every round trip
    (seconds) and its ``keepaliveTimedOut(timeout)`` once, with the
    :class:`Timeout <twisted_keepalive.Timeout>`, before the 1011 Close goes out.

    :param factory: a ``twisted.web.websocket`` server factory (its
        ``buildProtocol`` takes the ``Request``) or client factory (it takes
        the URL).
    :param ping_interval: seconds between keepalive Pings; ``None`` disables
        keepalive and heartbeat (``ping()`` still works).  Default 20.0.
    :param ping_timeout: seconds to wait for the Pong; ``None`` disables the
        heartbeat only.  Default 20.0.
    :param close_timeout: seconds after our Close frame (a keepalive
        timeout's 1011, or the application's ``loseConnection``) before the
        TCP connection is aborted.  Default 10.0.
    :param first_ping_spread: fraction (0 to 1) of the first interval by which
        the first Ping is brought forward at random.  Default 1.0.
    :param browser_heartbeat: answer the heartbeat messages of
        ``keepalive.js`` (and keep them from ``textMessageReceived``).
        Default False.
    :param clock: the ``IReactorTime`` that schedules deadlines and gives the
        time (inject a ``task.Clock`` in tests); ``None`` (the default): the
        reactor, with the monotonic clock.
    :param reactor: the reactor for ``clock=None``; default the global one.
    :raises TypeError: ``factory`` has no ``buildProtocol``, or a setting is
        not of its type.
    :raises ValueError: a setting out of range, or ``factory`` already has
        keepalive.
    """
    if isinstance(factory, KeepaliveFactory):
        raise ValueError(
            f"{factory!r} already has keepalive: wrapping it again would ping twice per interval"
        )
    if not callable(getattr(factory, "buildProtocol", None)):
        raise TypeError(
            "with_keepalive() needs a twisted.web.websocket factory (an object with "
            f"buildProtocol), not {type(factory).__name__} {factory!r}"
        )
    settings = {
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "close_timeout": close_timeout,
        "first_ping_spread": first_ping_spread,
        "browser_heartbeat": browser_heartbeat,
    }
    config = KeepaliveConfig(
        **{name: validate_setting(name, value) for name, value in settings.items()}  # type: ignore[arg-type]
    )
    if clock is not None and not callable(getattr(clock, "callLater", None)):
        raise TypeError(f"clock must provide IReactorTime (callLater, seconds), not {clock!r}")
    return KeepaliveFactory(factory, config, clock, reactor)
