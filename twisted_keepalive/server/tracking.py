"""
Every connection of the server known and logged: :class:`ServerFactory`
holds the open ones, so that shutdown can close them; each
:class:`TrackedConnection` logs its opening and closing, and knows how to
go away when the server stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_keepalive import Timeout

from .connections import GOING_AWAY_CODE, GOING_AWAY_REASON, ConnectionTracker

__all__ = [
    "AUTOBAHN_DISPATCHERS",
    "GOING_AWAY_CODE",
    "GOING_AWAY_REASON",
    "ServerFactory",
    "TrackedConnection",
]

_log = Logger(namespace="twisted_keepalive")

#: Autobahn's private dispatchers :class:`TrackedConnection` wraps.  Autobahn
#: has no public hook that runs whatever the application's class does: an
#: operator's ``onOpen`` / ``onClose`` without ``super()`` would skip the
#: tracking, and the drain would never close that connection.  They are
#: among the mixin's :data:`~twisted_keepalive.autobahn.hooks.HOOKED_METHODS`,
#: checked when the library is imported (one error naming the Autobahn
#: version, not a server that silently tracks nothing); the unit tests fail
#: if one disappears.
AUTOBAHN_DISPATCHERS = ("_onOpen", "_onClose")


class TrackedConnection:
    """
    Connection logging and tracking for the service.

    It comes first among the served class's bases, so protocols that override
    ``onOpen`` / ``onClose`` / ``connectionLost`` without calling ``super()``
    cannot skip it.
    """

    if TYPE_CHECKING:
        # Provided by the Autobahn protocol and the mixin it goes with.
        factory: ServerFactory
        transport: Any
        peer: str
        state: int
        latency: float
        keepalive_timeout: Timeout | None

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
        if self.factory.log_connections:
            _log.info(
                "WebSocket connection from {peer} opened", peer=self.peer, keepalive_event="open"
            )
        super()._onOpen()  # type: ignore[misc]
        if self.factory.draining:
            # Its handshake was under way when the drain closed the ports:
            # it opens, as the client asked, and goes away like the rest.
            self.going_away()

    def _onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._served_closed = (code, reason, wasClean)
        super()._onClose(wasClean, code, reason)  # type: ignore[misc]

    def connectionLost(self, reason: Failure) -> None:
        try:
            super().connectionLost(reason)  # type: ignore[misc]
        finally:
            if self._served_opened and self.factory.log_connections:
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
        # A handshake still under way (CONNECTING) finishes first: _onOpen
        # sends the 1001 then, and the close timeout bounds the wait.

    def abort(self) -> None:
        self.transport.abortConnection()


# Autobahn's own bases disagree on ``protocol``; mypy says so once a class has two.
class ServerFactory(ConnectionTracker, WebSocketServerFactory):  # type: ignore[misc]
    """An Autobahn server factory that knows its connections, for shutdown."""

    def __init__(self, url: str | None, reactor: Any) -> None:
        WebSocketServerFactory.__init__(self, url, reactor=reactor)  # type: ignore[no-untyped-call]
        ConnectionTracker.__init__(self)
