"""
Answering the peer's Pings when our write buffer is full.

Adding keepalive must never make a connection less alive than plain
Autobahn, which answers every Ping at once.  So do we -- except that a peer
which pings but never reads would have us queue Pongs without end.  While
more than :data:`PONG_BACKLOG_LIMIT` waits in Twisted's buffer, at most one
Pong of ours waits there: a Ping that arrives while it does is parked (the
latest wins, as RFC 6455 5.5.3 allows) and answered as soon as that Pong has
left.  A peer that reads gets every answer at once; one that never reads
costs one Pong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..glue import transport as probes

#: Bytes in Twisted's write buffer above which Pongs are paced.
PONG_BACKLOG_LIMIT = 64 * 1024

#: Seconds before looking again whether a parked Pong may go out; doubles up
#: to :data:`PONG_RETRY_MAX` while our buffer does not drain, so a stuck peer
#: costs a few timer calls, not a busy loop.
PONG_RETRY = 0.01
PONG_RETRY_MAX = 1.0


class PongPacer:
    """
    The Pong pacing of one connection, made on its first Ping that meets a
    full buffer.

    :param protocol: the Autobahn protocol (its transport and
        ``trafficStats.outgoingOctetsWireLevel``, our stream's length).
    :param clock: the ``IReactorTime`` for retries.
    :param answer: writes the Pong for a payload now.
    """

    __slots__ = ("answer", "clock", "parked", "pong_end", "protocol", "retry_call", "retry_in")

    def __init__(self, protocol: Any, clock: Any, answer: Callable[[bytes], None]) -> None:
        self.protocol = protocol
        self.clock = clock
        self.answer = answer
        self.parked: bytes | None = None
        self.pong_end = 0
        self.retry_in = PONG_RETRY
        self.retry_call: Any = None

    def admit(self, payload: bytes) -> bool:
        """Whether to answer ``payload`` now; if not it is parked."""
        if self._may_answer():
            self.parked = None
            return True
        self.parked = payload
        if self.retry_call is None:
            self.retry_in = PONG_RETRY
            self.retry_call = self.clock.callLater(self.retry_in, self._retry)
        return False

    def written(self) -> None:
        """A Pong was just written: note where it ends in our stream."""
        self.pong_end = self.protocol.trafficStats.outgoingOctetsWireLevel

    def stop(self) -> None:
        """The connection is going: no retry, nothing parked."""
        self.parked = None
        call, self.retry_call = self.retry_call, None
        if call is not None and call.active():
            call.cancel()

    def _may_answer(self) -> bool:
        protocol = self.protocol
        backlog = probes.transport_backlog(protocol.transport)
        if backlog is None or backlog <= PONG_BACKLOG_LIMIT:
            return True
        # Our previous Pong has left Twisted's buffer once everything up to
        # its end has been handed to the kernel.
        written: int = protocol.trafficStats.outgoingOctetsWireLevel
        return written - backlog >= self.pong_end

    def _retry(self) -> None:
        self.retry_call = None
        payload = self.parked
        protocol = self.protocol
        if payload is None or protocol.state != protocol.STATE_OPEN:
            self.parked = None
            return
        if self._may_answer():
            self.parked = None
            self.answer(payload)
            return
        self.retry_in = min(self.retry_in * 2, PONG_RETRY_MAX)
        self.retry_call = self.clock.callLater(self.retry_in, self._retry)


def needs_pacing(transport: Any) -> bool:
    """Whether a Ping arriving now meets a full buffer (cheap; no pacer yet)."""
    backlog = probes.transport_backlog(transport)
    return backlog is not None and backlog > PONG_BACKLOG_LIMIT
