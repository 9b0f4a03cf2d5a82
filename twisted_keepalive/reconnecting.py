"""
A WebSocket client that stays connected: Twisted's ``ClientService`` with
keepalive on every connection and a backoff that counts opened WebSockets.

``ClientService`` already reconnects; this adds what a WebSocket needs on
top of it.  Its attempt counter restarts whenever TCP connects, so a balancer
that accepts TCP and then refuses every handshake (HAProxy's 503 with no
backend up) would be retried at the first delay forever: here an attempt
counts as failed until the opening handshake completes.  The heartbeat of
:class:`KeepaliveMixin` turns a dead server into a lost
connection, and so into a reconnect.  Stopping sends a Close first, where
``ClientService`` alone would only drop TCP.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from typing import Any

from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from .autobahn import KeepaliveMixin

__all__ = ["FullJitterBackoff", "ReconnectingClient"]

#: The close code a stopping client sends: a normal end of the connection.
STOP_CODE = 1000


class FullJitterBackoff:
    """
    Capped exponential backoff with full jitter: the delay before retry
    ``attempt`` (1 for the first) is uniform in ``[0, ceiling(attempt))``,
    where the ceiling starts at ``initial_delay`` seconds and grows by
    ``factor`` per attempt up to ``max_delay`` seconds.

    Full jitter keeps clients that lost the same server from coming back in
    step.  Usable as a ``ClientService`` ``retryPolicy``.

    :param initial_delay: seconds, the ceiling of the first delay.  Default 1.0.
    :param max_delay: seconds, the largest ceiling.  Default 30.0.
    :param factor: how much the ceiling grows per attempt.  Default 2.0.
    :param random: returns a float in ``[0, 1)``; default ``random.random``.
    :ivar initial_delay: seconds, as given.
    :ivar max_delay: seconds, as given.
    :ivar factor: as given.
    :ivar random: the jitter's source, as given.
    :raises TypeError: a setting that is not a number.
    :raises ValueError: a delay that is not positive and finite, a
        ``max_delay`` below ``initial_delay``, or a ``factor`` below 1.
    """

    __slots__ = ("factor", "initial_delay", "max_delay", "random")

    def __init__(
        self,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        factor: float = 2.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        for name, value in (("initial_delay", initial_delay), ("max_delay", max_delay),
                            ("factor", factor)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, not {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be positive and finite, not {value!r}")
        if max_delay < initial_delay:
            raise ValueError(
                f"max_delay ({max_delay!r}) is below initial_delay ({initial_delay!r})"
            )
        if factor < 1:
            raise ValueError(f"factor must be at least 1, not {factor!r}")
        self.initial_delay = float(initial_delay)
        self.max_delay = float(max_delay)
        self.factor = float(factor)
        self.random = random

    def ceiling(self, attempt: int) -> float:
        """Seconds: the longest delay retry ``attempt`` (1, 2, ...) may wait."""
        growth = max(0, attempt - 1)
        if self.factor > 1 and growth > math.log(self.max_delay / self.initial_delay, self.factor):
            return self.max_delay  # also keeps factor ** growth from overflowing
        return min(self.max_delay, self.initial_delay * self.factor**growth)

    def __call__(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt``."""
        return self.random() * self.ceiling(attempt)


class ReconnectingClient(Service):
    """
    Keep one keepalive WebSocket connection open to ``endpoint``, through
    Twisted's ``ClientService``::

        factory = WebSocketClientFactory("wss://example.com/feed")
        factory.protocol = Feed          # class Feed(KeepaliveMixin, WebSocketClientProtocol)
        client = ReconnectingClient(clientFromString(reactor, "tls:example.com:443"), factory)
        client.setServiceParent(application)   # or client.startService()
        feed = await client.whenOpen()

    A refused or dropped connection, a failed opening handshake, a Close from
    the server (1001 when it drains) and a keepalive timeout all lead to a
    new attempt after :class:`FullJitterBackoff` delays: the first retry
    after a connection that was open waits up to ``initial_delay``, each
    attempt that does not open a WebSocket doubles the ceiling (by
    ``factor``), up to ``max_delay``.  Every retry is logged at info level
    with ``keepalive_event="reconnect"`` and why the last attempt ended.

    :param endpoint: where to connect (any ``IStreamClientEndpoint``).
    :param factory: an Autobahn ``WebSocketClientFactory`` whose ``protocol``
        puts :class:`KeepaliveMixin` first.
    :param initial_delay: seconds; see :class:`FullJitterBackoff`.  Default 1.0.
    :param max_delay: seconds; the backoff cap.  Default 30.0.
    :param factor: the backoff's growth per attempt.  Default 2.0.
    :param clock: schedules retries and the stop timeout; default the reactor.
    :param random: returns a float in ``[0, 1)`` for the jitter; default
        ``random.random``.
    :ivar backoff: the :class:`FullJitterBackoff` built from those settings.
    :raises TypeError: the factory's protocol does not carry the mixin, or a
        backoff setting is not a number.
    :raises ValueError: a backoff setting out of range.
    """

    # As a class attribute, each event's log_source is the client it is about.
    _log = Logger(namespace="twisted_keepalive")

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        factory: Any,
        *,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        factor: float = 2.0,
        clock: IReactorTime | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        protocol = getattr(factory, "protocol", None)
        if not (isinstance(protocol, type) and issubclass(protocol, KeepaliveMixin)):
            raise TypeError(
                f"the factory's protocol {protocol!r} is not a KeepaliveMixin subclass: "
                "its connections would have no heartbeat to notice a dead server"
            )
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        self.backoff = FullJitterBackoff(initial_delay, max_delay, factor, random)
        self._protocol: Any = None
        #: Connection attempts since a WebSocket last opened; inside the
        #: protocol's ``onOpen``, the attempts that this opening took.
        self.attempts = 0
        self._clock: Any = clock
        self._endpoint = endpoint
        self._last_end = "not connected yet"
        self._waiting: list[Deferred[Any]] = []
        # Without mypy-zope, mypy cannot see that these provide the interfaces.
        counted: Any = _CountedEndpoint(endpoint, self)
        watching: Any = _WatchingFactory(factory, self)
        self._service = ClientService(
            counted,
            watching,
            retryPolicy=self._retry_delay,
            clock=clock,
        )

    # -- the application's side ---------------------------------------------

    @property
    def protocol(self) -> Any:
        """The protocol of the open WebSocket connection, or ``None`` (also
        while a connection is closing)."""
        protocol = self._protocol
        if protocol is not None and protocol.state == protocol.STATE_OPEN:
            return protocol
        return None

    def whenOpen(self) -> Deferred[Any]:
        """
        The open connection's protocol: now if one is open, else when the
        next opening handshake completes.  Fails with ``CancelledError`` if
        the client stops first.
        """
        protocol = self.protocol
        if protocol is not None:
            return succeed(protocol)
        waiter: Deferred[Any] = Deferred(self._waiting.remove)
        self._waiting.append(waiter)
        return waiter

    def startService(self) -> None:
        """Start connecting (``IService``; ``setServiceParent`` calls it)."""
        super().startService()  # type: ignore[no-untyped-call]
        self._service.startService()

    def stopService(self) -> Deferred[None]:
        """
        Stop reconnecting and end the connection: a Close 1000 and its closing
        handshake for at most the protocol's ``close_timeout``, then TCP.

        :return: a ``Deferred`` that fires once no connection or attempt is
            left.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.errback(CancelledError("the reconnecting client stopped"))
        # A connection that is closing already still gets its closing
        # handshake's time before TCP is dropped.
        protocol = self._protocol
        if protocol is None:
            return self._service.stopService()
        return self._close_then_stop(protocol)

    # -- what ClientService and the connections report -----------------------

    def _retry_delay(self, _attempt: int) -> float:
        # ClientService's own count restarts when TCP connects; ours when a
        # WebSocket opens, so a handshake refused every time backs off too.
        # The first retry, after a lost connection or a first failed attempt
        # alike, waits up to initial_delay.
        delay = self.backoff(max(1, self.attempts))
        self._log.info(
            "reconnecting to {endpoint} in {delay:.3f} s (attempt {attempt}) after: {why}",
            endpoint=self._endpoint,
            delay=delay,
            attempt=self.attempts + 1,
            why=self._last_end,
            keepalive_event="reconnect",
        )
        return delay

    def _attempt_started(self) -> None:
        self.attempts += 1

    def _attempt_failed(self, failure: Failure) -> Failure:
        self._last_end = f"connecting failed: {failure.getErrorMessage()}"
        return failure

    def _opened(self, protocol: Any) -> None:
        self.attempts = 0
        self._protocol = protocol
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(protocol)

    def _closed(self, protocol: Any) -> None:
        if protocol is self._protocol:
            self._protocol = None
        self._last_end = connection_end(protocol)

    def _close_then_stop(self, protocol: Any) -> Deferred[None]:
        stopped: Deferred[None] = Deferred()
        timer: Any = None
        once: list[bool] = []

        def stop_service(result: object = None) -> object:
            # Either the closing handshake ended or the close timeout passed:
            # whichever comes first stops ClientService, the other is ignored.
            if not once:
                once.append(True)
                if timer is not None and timer.active():
                    timer.cancel()
                self._service.stopService().chainDeferred(stopped)
            return result

        # Registered before the Close goes out: Autobahn may resolve is_closed
        # inside sendClose, and ClientService must stop before it would retry.
        protocol.is_closed.addCallback(stop_service)
        protocol.sendClose(STOP_CODE)
        if not once:
            timer = self._clock.callLater(protocol.keepalive_config.close_timeout, stop_service)
        return stopped


def connection_end(protocol: Any) -> str:
    """Why a connection ended, in a few words, for the reconnect log line."""
    timeout = protocol.keepalive_timeout
    if timeout is not None:
        return f"keepalive timeout ({timeout.cause.value})"
    code = getattr(protocol, "remoteCloseCode", None)
    if code is not None:
        reason = getattr(protocol, "remoteCloseReason", None)
        return f"the server closed with {code}" + (f" ({reason})" if reason else "")
    if getattr(protocol, "wasClean", False):
        return "closed"
    return "connection lost"


class _CountedEndpoint:
    """The application's endpoint, telling the client of each attempt."""

    def __init__(self, endpoint: Any, client: ReconnectingClient) -> None:
        self._endpoint = endpoint
        self._client = client

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        self._client._attempt_started()
        connecting: Deferred[Any] = self._endpoint.connect(protocolFactory)
        connecting.addErrback(self._client._attempt_failed)
        return connecting


class _WatchingFactory:
    """
    The application's factory, watching each protocol it builds open and
    close through Autobahn's public ``is_open`` / ``is_closed``.
    """

    def __init__(self, factory: Any, client: ReconnectingClient) -> None:
        self._factory = factory
        self._client = client

    def buildProtocol(self, addr: Any) -> Any:
        protocol = self._factory.buildProtocol(addr)
        if protocol is not None:
            client = self._client

            # Each passes its result on: the application may wait on these too.
            def opened(result: object) -> object:
                client._opened(protocol)
                return result

            def closed(result: object) -> object:
                client._closed(protocol)
                return result

            protocol.is_open.addCallback(opened)
            protocol.is_closed.addCallback(closed)
        return protocol

    def __getattr__(self, name: str) -> Any:
        # doStart, doStop, startedConnecting, clientConnectionFailed, ...
        return getattr(self._factory, name)
