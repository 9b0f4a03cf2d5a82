"""
How fast the server takes connections off the kernel's accept queue, so
that a reconnect storm is served rather than reset (``bench/storm.py``).

Left to itself, Twisted accepts as fast as the listening socket is readable
-- in batches of ``numberAccepts``, which it grows by 20 after every full
batch -- whether or not it can handshake them soon.  The epoll reactor then
reads every readable socket in one turn before it runs a timer or writes a
reply, so a storm makes turns of thousands of handshakes, and the HTTP idle
timeout (5 s from the accept, as Autobahn's opening-handshake timeout)
fires for connections accepted before such a turn: it closes them with the
request unread, and their clients see a reset.  In a 50,000-client storm
over four workers whose clients were slow to send (bench/storm.py with
every connect made before any request was written), 14,384 clients were
reset without pacing and 4,863 with it (13,479 and 8,807 over the kernel's
default queues); with clients that send at once, none either way.

:class:`AcceptPacer` stops reading the listening sockets while
:data:`MOST_PENDING` accepted connections have yet to finish their opening
handshake, and reads again as they finish, so that a turn carries at most a
few hundred handshakes (a fraction of a second) and the rest of the storm
waits in the kernel's queue, where no timer runs -- which is why that queue
is worth making deep (``--backlog``, ``net.core.somaxconn``).  Clients that
connect and say nothing (slow, or hostile) cannot hold the door shut: a
reactor turn reads every socket that has something to say, so two turns
after a pause whatever is still pending is waiting on its client, stops
counting, and accepting resumes; the HTTP idle timeout deals with those.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

__all__ = ["ACCEPTS_PER_TURN", "MOST_PENDING", "AcceptPacer"]

_log = Logger(namespace="twisted_keepalive")

#: Accepted connections whose opening handshake may be under way at once:
#: about 0.2 s of one core's handshakes, well inside the 5 s timeout.
MOST_PENDING = 256

#: Connections accepted per readable event of a listening socket: Twisted's
#: own starting batch, which it would otherwise grow without bound.
ACCEPTS_PER_TURN = 100


class AcceptPacer:
    """
    Pauses every listening port while :data:`MOST_PENDING` accepted
    connections are still in their opening handshake.

    :param clock: the ``IReactorTime`` whose ``callLater(0, ...)`` marks
        the reactor's turns.
    :param most_pending: default :data:`MOST_PENDING`.
    """

    def __init__(self, clock: Any, most_pending: int = MOST_PENDING) -> None:
        if most_pending < 1:
            raise ValueError(f"most_pending must be at least 1, not {most_pending!r}")
        self._clock = clock
        self._most = most_pending
        self._ports: list[Any] = []
        # The accepted connections still in their opening handshake.
        self._pending: dict[Any, None] = {}
        #: Whether the ports are paused now.
        self.paused = False
        #: How many times accepting was paused (for figures and tests).
        self.pauses = 0

    def add_port(self, port: Any) -> None:
        """Pace ``port`` (an ``IListeningPort``); a port that cannot be paused is left alone."""
        if not (callable(getattr(port, "stopReading", None)) and hasattr(port, "startReading")):
            _log.debug("{port!r} accepts as its endpoint decides", port=port)
            return
        cap_accepts_per_turn(port, ACCEPTS_PER_TURN)
        self._ports.append(port)
        if self.paused:
            port.stopReading()

    def accepted(self, connection: Any) -> None:
        """``connection`` was accepted; its opening handshake begins."""
        self._pending[connection] = None
        if not self.paused and len(self._pending) >= self._most:
            self._pause()

    def finished(self, connection: Any) -> None:
        """``connection``'s handshake is over: upgraded, answered, or lost."""
        was_pending = connection in self._pending
        self._pending.pop(connection, None)
        if was_pending and self.paused and len(self._pending) < self._most:
            self._resume()

    def _pause(self) -> None:
        self.paused = True
        self.pauses += 1
        for port in self._ports:
            port.stopReading()
        # The next turn starts with this call, and its I/O reads what the
        # pending connections sent; the call after it comes once that is done.
        self._clock.callLater(0, self._after_turns, self.pauses, 2)

    def _after_turns(self, pause: int, turns: int) -> None:
        if not self.paused or pause != self.pauses:
            return  # resumed since, perhaps paused again: that pause counts anew
        if turns > 1:
            self._clock.callLater(0, self._after_turns, pause, turns - 1)
            return
        # A whole turn read every socket with something to say: those still
        # pending wait on their clients, and must not keep the door shut.
        self._pending.clear()
        self._resume()

    def _resume(self) -> None:
        self.paused = False
        for port in self._ports:
            # A port that stopped listening (a drain) must stay closed, also
            # in the turn between stopListening() and the socket's close.
            if getattr(port, "connected", True) and not getattr(port, "disconnecting", False):
                port.startReading()


def cap_accepts_per_turn(port: Any, most: int) -> bool:
    """
    Keep ``port`` from accepting more than ``most`` connections per readable
    event; whether it could (``False`` for a port that is not Twisted's
    ``tcp.Port``: left as it is).

    Twisted has no public setting for this: ``tcp.Port.numberAccepts`` is
    the batch its ``doRead`` uses and regrows, so the cap is applied before
    each ``doRead``.  ``tests/unit/test_accepting.py`` fails if either goes.
    """
    if not isinstance(getattr(port, "numberAccepts", None), int):
        return False
    read = port.doRead

    def doRead() -> Any:
        if port.numberAccepts > most:
            port.numberAccepts = most
        return read()

    port.doRead = doRead
    return True
