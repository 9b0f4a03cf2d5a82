"""
The phases of a connection's keepalive, as data.

``NEW`` → ``IDLE`` (open) ⇄ ``AWAITING_PONG`` (a keepalive Ping in flight) →
``RECHECKING`` (its deadline passed; one I/O poll before the verdict) →
``AWAITING_PONG`` again (the Pong came, or a busy peer got more time: via
``IDLE``) or ``TIMED_OUT``; any open phase → ``CLOSING`` when the closing
handshake begins; every phase → ``CLOSED`` when the connection is gone.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    """Where a connection's keepalive stands."""

    #: The connection is not open yet: no Pings at all.
    NEW = "new"
    #: Open, no keepalive Pong awaited: the next keepalive Ping is due at
    #: ``wake_at`` (``None``: keepalive off).
    IDLE = "idle"
    #: A keepalive Ping is in flight; its Pong is due at ``wake_at``.
    AWAITING_PONG = "awaiting_pong"
    #: The Pong deadline passed; the verdict waits for one I/O poll.
    RECHECKING = "rechecking"
    #: The closing handshake is under way: no more keepalive, but Pongs still
    #: settle the Pings in flight.
    CLOSING = "closing"
    #: The verdict was a timeout (:attr:`Heartbeat.timeout`); Pongs no
    #: longer count.
    TIMED_OUT = "timed_out"
    #: The connection is gone: nothing in flight, nothing scheduled.
    CLOSED = "closed"


#: The phases of an open connection: application Pings may go out.
OPEN_PHASES = frozenset((Phase.IDLE, Phase.AWAITING_PONG, Phase.RECHECKING))
