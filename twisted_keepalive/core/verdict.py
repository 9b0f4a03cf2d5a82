"""
The rules that turn a passed Pong deadline into a verdict.

A deadline that passed is not yet proof of a dead peer: the reactor may have
been blocked (Twisted runs due timers before it reads, so a Pong that arrived
meanwhile is still unread), the peer may be half-way through a large frame
that holds its Pong back, our Ping may still be queued behind our own data
that a slow reader is draining, or the Pong may have arrived behind more of
the peer's data than one reactor turn reads.  :func:`judge` weighs that
evidence and either postpones the deadline or gives the :class:`Timeout`
that says why it did not.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: How late (seconds) a deadline may fire before the verdict blames a stalled
#: reactor as well as, or instead of, the peer.
STALL_THRESHOLD = 0.1

#: A peer that is demonstrably busy (mid-frame, or our Ping still queued
#: behind our own data it is reading) gets more time for its Pong, but never
#: more than this many ``ping_timeout``\ s after the Ping in total: a trickle
#: must not keep a connection alive forever without a Pong.
MAX_GRACE_FACTOR = 10


class Verdict(enum.Enum):
    """What :meth:`Heartbeat.wake <twisted_keepalive.core.heartbeat.Heartbeat.wake>` decided."""

    #: Nothing due yet; sleep until ``wake_at`` (``None``: nothing scheduled).
    WAIT = "wait"
    #: Send the keepalive Ping now (``Heartbeat.keepalive_payload``).
    PING = "ping"
    #: The Pong deadline has passed, but the reactor has not read the socket
    #: since: let it poll for I/O once (``callLater(0, ...)``), then call
    #: ``Heartbeat.judge`` with what it saw.
    RECHECK = "recheck"
    #: No Pong in time: fail the connection; details in ``Heartbeat.timeout``.
    TIMEOUT = "timeout"


class Cause(enum.Enum):
    """Why a heartbeat timed out: a bounded set, fit for a metrics label."""

    #: The reactor ran the deadline on time and nothing came from the peer.
    PEER_SILENT = "peer_silent"
    #: The deadline ran late because the reactor was blocked, and the peer
    #: was still silent once the reactor had read the socket.
    REACTOR_STALLED = "reactor_stalled"
    #: The peer kept busy -- sending one frame, reading our data ahead of the
    #: Ping, or sending more than we read -- but no Pong came within
    #: ``MAX_GRACE_FACTOR`` times ``ping_timeout``.
    PEER_TOO_SLOW = "peer_too_slow"


@dataclass(frozen=True)
class Evidence:
    """
    What the adapter saw of the connection when a Pong deadline passed.

    :ivar received_at: monotonic time of the last bytes from the peer.
    :ivar mid_frame: the peer is in the middle of sending a frame, so its Pong
        cannot come before that frame ends.
    :ivar frame_began_at: monotonic time the first bytes of that frame arrived.
    :ivar delivered: bytes of our outbound stream the peer has acknowledged,
        or ``None`` when the transport cannot tell.
    :ivar queued: bytes of ours still waiting to leave this host (transport
        and kernel), or ``None``.
    :ivar unread: bytes from the peer that arrived and wait in the kernel's
        receive queue, not read yet, or ``None`` when the transport cannot
        tell.
    """

    received_at: float
    mid_frame: bool = False
    frame_began_at: float = 0.0
    delivered: int | None = None
    queued: int | None = None
    unread: int | None = None


@dataclass(frozen=True)
class Timeout:
    """
    Why and when a heartbeat gave up: every field is for logs, metrics and
    the application's timeout hook.

    :ivar cause: the :class:`Cause`.
    :ivar waited: seconds between the keepalive Ping and the verdict.
    :ivar lateness: seconds by which the deadline timer fired late (reactor lag).
    :ivar idle: seconds since the last bytes from the peer.
    :ivar queued: bytes of ours still waiting to leave this host at the
        verdict, or ``None`` when the transport cannot tell.
    :ivar latency: the last measured round trip, seconds (0.0 if none yet).
    :ivar ping_interval: the interval in force, seconds.
    :ivar ping_timeout: the timeout in force, seconds.
    """

    cause: Cause
    waited: float
    lateness: float
    idle: float
    queued: int | None
    latency: float
    ping_interval: float | None
    ping_timeout: float


@dataclass(frozen=True)
class Deadline:
    """
    The keepalive Ping whose deadline passed, as :func:`judge` needs it.

    :ivar sent_at: when the Ping went out (monotonic seconds).
    :ivar deadline: when its Pong was due.
    :ivar fired_at: when the deadline's timer actually ran.
    :ivar queued_at: bytes of our stream acknowledged when the Ping was
        queued behind our own data, or at the last judgement; ``None`` if it
        was not queued.
    """

    sent_at: float
    deadline: float
    fired_at: float
    queued_at: int | None


def judge(
    now: float,
    ping: Deadline,
    evidence: Evidence,
    *,
    latency: float,
    ping_interval: float | None,
    ping_timeout: float,
) -> float | Timeout:
    """
    Postpone the deadline of a peer that is demonstrably busy, or time out.

    A peer mid-frame whose bytes are still arriving cannot send its Pong
    before the frame ends; a Ping still queued behind our own data that the
    peer is reading has not reached it yet; bytes of the peer still waiting
    in our receive queue may hold its Pong.  Either way the peer is alive, and
    the deadline moves to ``ping_timeout`` after the latest sign of progress,
    but never beyond ``MAX_GRACE_FACTOR * ping_timeout`` after the Ping.

    :return: the new deadline (monotonic seconds), or the :class:`Timeout`.
    """
    sent_at = ping.sent_at
    limit = sent_at + ping_timeout * MAX_GRACE_FACTOR
    progress_at = None
    if (
        evidence.mid_frame
        and evidence.received_at > sent_at
        # Only a frame the peer began before our Ping could reach it holds
        # its Pong back; one begun later is no excuse, or a peer always
        # half-way through some frame would never be judged.
        and evidence.frame_began_at <= sent_at + latency + STALL_THRESHOLD
    ):
        progress_at = evidence.received_at
    delivered = evidence.delivered
    if (
        ping.queued_at is not None
        and delivered is not None
        and delivered > ping.queued_at
        and evidence.queued
    ):
        # Our Ping was queued behind our own data, some of it is still
        # waiting, and the peer acknowledged more since we last looked: it is
        # reading, slowly, and may not have read the Ping yet.
        progress_at = now
    if evidence.unread:
        # The peer's bytes are here but not read yet -- the reactor reads a
        # socket a buffer at a time, and one recheck turn may not reach the
        # end -- so its Pong may be among them: the slow one is us.
        progress_at = now
    if progress_at is not None and progress_at + ping_timeout > now:
        if now < limit:
            return min(progress_at + ping_timeout, limit)
        cause = Cause.PEER_TOO_SLOW
    else:
        # The recheck round costs one reactor turn; only lateness beyond the
        # threshold says the reactor itself was not running.
        stalled = ping.fired_at - ping.deadline > STALL_THRESHOLD
        cause = Cause.REACTOR_STALLED if stalled else Cause.PEER_SILENT
    return Timeout(
        cause=cause,
        waited=now - sent_at,
        lateness=max(0.0, ping.fired_at - ping.deadline),
        idle=now - evidence.received_at,
        queued=evidence.queued,
        latency=latency,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
