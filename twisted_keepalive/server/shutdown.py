"""
Draining without a herd: :class:`WebSocketService` stops a server in the
order a load balancer needs.

1. ``/readyz`` turns to 503 at once; for ``drain_grace`` seconds the server
   keeps listening and serving, new connections included, while the
   balancer's health check notices.
2. The ports stop listening, and the open connections get Close 1001
   "going away" spread evenly over ``drain_spread`` seconds: their clients
   reconnect elsewhere at a steady rate instead of all in one instant.
3. After at most the close timeout the connections still open are aborted.

A second signal (see :mod:`.signals`) hurries a drain under way: the rest
of the grace and of the spread are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, TimeoutError
from twisted.logger import Logger

from twisted_keepalive.serving import ListeningService

from .connections import GOING_AWAY_CODE, GOING_AWAY_REASON, ConnectionTracker
from .health import Ready

__all__ = ["HANDSHAKE_BOUND", "WebSocketService"]

_log = Logger(namespace="twisted_keepalive")

#: Aborted connections report ``connectionLost`` within a reactor turn; this
#: only bounds a transport that never does.
_ABORT_GRACE = 1.0

#: Seconds a drain waits for the handshakes under way when the ports closed
#: (they take milliseconds; a client that sent half a request by then is
#: not waited for any longer).
HANDSHAKE_BOUND = 2.0

#: The shortest pause between two batches of 1001s, in seconds: 20,000
#: connections spread over 5 s go forty every 10 ms.
_SHORTEST_TICK = 0.01


class WebSocketService(MultiService):
    """
    The listeners of one factory, its readiness and its drain.

    :param close_timeout: seconds the closing handshakes may take before the
        rest are aborted.
    :param drain_grace: seconds between ``/readyz`` turning 503 and the ports
        closing; default 0.
    :param drain_spread: seconds over which the 1001s are spread; 0 sends them
        all at once.
    :param ready: the readiness ``/readyz`` reports.
    """

    def __init__(
        self,
        factory: ConnectionTracker,
        reactor: Any,
        *,
        close_timeout: float,
        drain_grace: float = 0.0,
        drain_spread: float = 0.0,
        ready: Ready | None = None,
        handshakes_under_way: Callable[[], int] = lambda: 0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.factory = factory
        self.close_timeout = close_timeout
        self.drain_grace = drain_grace
        self.drain_spread = drain_spread
        self.ready = ready if ready is not None else Ready()
        self.listeners: list[ListeningService] = []
        self._handshakes_under_way = handshakes_under_way
        self._reactor = reactor
        self._drained: Deferred[None] | None = None
        self._drain_done = False
        self._waiters: list[Deferred[None]] = []
        self._nap: tuple[Any, Deferred[None]] | None = None
        self._hurried = False

    def add_listener(self, listener: ListeningService) -> None:
        """Listen with ``listener`` while running; it stops listening when the drain says."""
        self.listeners.append(listener)
        self.addService(listener)  # type: ignore[no-untyped-call]

    def drain(self, *, grace: bool = True) -> Deferred[None]:
        """
        Start draining (once; later calls join the drain under way) and fire
        when every connection is gone.

        :param grace: wait ``drain_grace`` first; ``False`` when the port
            stays served by others anyway (a worker retiring in a rolling
            restart).
        """
        if self._drained is None:
            self._drained = Deferred.fromCoroutine(self._drain(grace))
            self._drained.addBoth(self._notify)
        waiter: Deferred[None] = Deferred()
        if self._drain_done:
            waiter.callback(None)
        else:
            self._waiters.append(waiter)
        return waiter

    def hurry(self) -> None:
        """Skip what is left of the grace and the spread of a drain under way."""
        self._hurried = True
        self._wake()

    @property
    def draining(self) -> bool:
        """Whether a drain has started."""
        return self._drained is not None

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self.drain()
        await super().stopService()  # type: ignore[no-untyped-call]

    def _notify(self, result: object) -> object:
        self._drain_done = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
        # A failure goes on to the log as unhandled: a drain must not fail.
        return result

    async def _drain(self, grace: bool) -> None:
        connections = self.factory.connections
        grace_seconds = self.drain_grace if grace else 0.0
        self.ready.stop("draining")
        _log.info(
            "draining {count} connections: not ready now, closing ports in {grace} s, "
            "1001 spread over {spread} s",
            count=len(connections),
            grace=grace_seconds,
            spread=self.drain_spread,
            keepalive_event="drain_start",
        )
        await self._sleep(grace_seconds)
        await DeferredList([listener.stop_listening() for listener in self.listeners])
        self.factory.draining = True
        if connections or self._handshakes_under_way():
            _log.info(
                "closing {count} connections with {code} {reason!r} over {spread} s",
                count=len(connections),
                code=GOING_AWAY_CODE,
                reason=GOING_AWAY_REASON,
                spread=0.0 if self._hurried else self.drain_spread,
                keepalive_event="shutdown",
            )
            await self._spread_going_away(list(connections))
            # Handshakes that were under way when the ports closed: each
            # opens, as its client asked, and goes away at once.
            await self._handshakes_finished()
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
        _log.info("drained", keepalive_event="drain_done")

    async def _spread_going_away(self, connections: Sequence[Any]) -> None:
        # Connection i of n goes at i/n of the spread: the first at once.
        count = len(connections)
        spread = self.drain_spread
        started = self._reactor.seconds()
        sent = 0
        while sent < count:
            now = self._reactor.seconds()
            if self._hurried or spread <= 0:
                due = count
            else:
                # The epsilon: a timer set for slot i may run a hair early.
                due = min(count, math.floor(count * (now - started) / spread + 1e-9) + 1)
            open_now = self.factory.connections
            for connection in connections[sent:due]:
                if connection in open_now:
                    connection.going_away()
            sent = max(sent, due)
            if sent < count:
                # Sleep until the next slot, not a fixed tick: no drift.
                next_slot = started + sent * spread / count
                await self._sleep(max(_SHORTEST_TICK, next_slot - now))

    async def _handshakes_finished(self) -> None:
        waited = 0.0
        while self._handshakes_under_way() and waited < HANDSHAKE_BOUND and not self._hurried:
            await self._sleep(_SHORTEST_TICK * 2)
            waited += _SHORTEST_TICK * 2

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0 or self._hurried:
            return
        woken: Deferred[None] = Deferred()
        call = self._reactor.callLater(seconds, woken.callback, None)
        self._nap = (call, woken)
        try:
            await woken
        finally:
            self._nap = None

    def _wake(self) -> None:
        if self._nap is not None:
            call, woken = self._nap
            if call.active():
                call.cancel()
                woken.callback(None)

    async def _all_lost_within(self, seconds: float) -> bool:
        try:
            await self.factory.when_all_lost().addTimeout(seconds, self._reactor)
        except TimeoutError:
            return False
        return True
