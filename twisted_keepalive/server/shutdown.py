"""
Graceful shutdown (SIGTERM or SIGINT under twistd): :class:`WebSocketService`
stops listening, sends Close 1001 "going away" to every connection, waits
for all of them to be lost for at most the close timeout, aborts the rest,
and lets twistd exit 0.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, TimeoutError
from twisted.logger import Logger

from .tracking import GOING_AWAY_CODE, GOING_AWAY_REASON, ServerFactory

__all__ = ["WebSocketService", "exit_zero_after_drain"]

_log = Logger(namespace="twisted_keepalive")

#: Aborted connections report ``connectionLost`` within a reactor turn; this
#: only bounds a transport that never does.
_ABORT_GRACE = 1.0


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

    def __init__(self, factory: ServerFactory, close_timeout: float, reactor: Any) -> None:
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
