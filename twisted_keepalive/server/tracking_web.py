"""
Every connection of a ``--framing twisted`` server known and logged, as
:mod:`.tracking` does for Autobahn's: :class:`WebServerFactory` builds the
operator's protocol and holds the open connections, so that the drain of
:class:`~.shutdown.WebSocketService` works unchanged; each
:class:`TrackedWebConnection` logs its opening and closing and knows how to
go away when the server stops.

Twisted's framing tells the application no close code: the ``close`` event
carries the code and reason of the Close this server sent (1001 at a drain,
1011 after a keepalive timeout), else those of the peer's Close as the
keepalive transport read them, as on Autobahn's framing; ``None`` and ``""``
when no Close went either way.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_keepalive.glue.closing import TIMEOUT_CLOSE_CODE, TIMEOUT_CLOSE_REASON
from twisted_keepalive.web.hooks import tcp_transport_of
from twisted_keepalive.web.link import peer_name

from .connections import GOING_AWAY_CODE, GOING_AWAY_REASON, ConnectionTracker

__all__ = ["TrackedWebConnection", "WebServerFactory"]

_log = Logger(namespace="twisted_keepalive")


class TrackedWebConnection:
    """
    The operator's protocol (:attr:`application`) with its connection
    tracked: it stands between the keepalive and the application, so that
    it sees every event whatever the application's methods do.  Attributes
    it does not have itself are the application's (its ``latencyMeasured``
    and ``keepaliveTimedOut`` hooks among them).
    """

    def __init__(self, application: Any, factory: WebServerFactory, peer: str) -> None:
        self.application = application
        self.factory = factory
        self.peer = peer
        #: The keepalive transport, from ``negotiationStarted`` on.
        self.transport: Any = None
        self._opened = False
        self._sent: tuple[int, str] | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "application":
            raise AttributeError(name)
        return getattr(self.application, name)

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport
        self.factory.connections.add(self)
        self.application.negotiationStarted(transport)

    def negotiationFinished(self) -> None:
        self._opened = True
        if self.factory.log_connections:
            _log.info(
                "WebSocket connection from {peer} opened", peer=self.peer, keepalive_event="open"
            )
        self.application.negotiationFinished()
        if self.factory.draining:
            # Its handshake was under way when the drain closed the ports.
            self.going_away()

    def textMessageReceived(self, message: str) -> None:
        self.application.textMessageReceived(message)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self.application.bytesMessageReceived(data)

    def pongReceived(self, payload: bytes) -> None:
        self.application.pongReceived(payload)

    def connectionLost(self, reason: Failure) -> None:
        try:
            self.application.connectionLost(reason)
        finally:
            if self._opened and self.factory.log_connections:
                self._log_close(reason)
            self.factory.connection_lost(self)

    def _log_close(self, reason: Failure) -> None:
        transport = self.transport
        timeout = transport.keepalive_timeout
        sent = (TIMEOUT_CLOSE_CODE, TIMEOUT_CLOSE_REASON) if timeout is not None else self._sent
        if sent is None:
            # Twisted tells no close code: the peer's, as the keepalive read it.
            sent = (transport.peer_close_code, transport.peer_close_reason or "")
        code, close_reason = sent
        _log.info(
            "WebSocket connection from {peer} closed: code {code}, "
            "reason {reason!r}, last latency {latency:.3f} s",
            peer=self.peer,
            code=code,
            reason=close_reason,
            clean=reason.check(ConnectionDone) is not None,  # type: ignore[no-untyped-call]
            latency=transport.latency,
            # Set when the heartbeat failed the connection.
            cause=None if timeout is None else timeout.cause.value,
            keepalive_event="close",
        )

    def going_away(self) -> None:
        """Start closing this connection because the server is stopping."""
        if self._sent is None and self.transport.keepalive_timeout is None:
            self._sent = (GOING_AWAY_CODE, GOING_AWAY_REASON)
            # The keepalive transport bounds the closing handshake by
            # close_timeout; closing again does nothing.
            self.transport.loseConnection(GOING_AWAY_CODE, GOING_AWAY_REASON)

    def abort(self) -> None:
        tcp_transport_of(self.transport).abortConnection()

    def __repr__(self) -> str:
        return f"<TrackedWebConnection {self.peer} around {self.application!r}>"


class WebServerFactory(ConnectionTracker):
    """
    A ``twisted.web.websocket`` server factory for ``protocol`` -- a class
    with a ``buildProtocol(request)`` class method, as in Twisted's own
    examples -- that knows its connections, for shutdown.
    """

    def __init__(self, protocol: Any) -> None:
        super().__init__()
        self.protocol = protocol

    def buildProtocol(self, request: Any) -> TrackedWebConnection:
        application = self.protocol.buildProtocol(request)
        return TrackedWebConnection(application, self, peer_name(request.channel.transport))
