"""
:class:`ConnectionTracker`: the open connections of one server, on either
framing, as the drain (:mod:`.shutdown`) and the garbage-collector policy
(:mod:`.gc`) use them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed

__all__ = ["GOING_AWAY_CODE", "GOING_AWAY_REASON", "ConnectionTracker"]

GOING_AWAY_CODE = 1001
GOING_AWAY_REASON = "going away"


class ConnectionTracker:
    """
    The open connections of a server's factory.

    :ivar connections: the open ones, each with ``going_away()`` (start the
        closing handshake with 1001) and ``abort()`` (drop TCP).
    :ivar lost: connections lost since the start: what a full collection
        may free.
    :ivar draining: set once the ports have closed for a drain: a connection
        whose handshake completes after that goes away at once.
    :ivar log_connections: whether each connection's opening and closing is
        logged (info events ``keepalive_event="open"`` / ``"close"``);
        ``--connection-log off`` clears it.  Warnings (a heartbeat timeout
        among them) are logged either way.
    """

    log_connections = True

    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.lost = 0
        self.draining = False
        self._waiters: list[Deferred[None]] = []

    def connection_lost(self, connection: Any) -> None:
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
