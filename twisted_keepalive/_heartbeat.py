"""
The keepalive and heartbeat of one WebSocket connection, as plain data.

Nothing here touches a socket, a reactor or Autobahn: times are floats in
seconds from a monotonic clock, payloads are ``bytes``, and every decision is
returned as a value.  The adapter (:mod:`twisted_keepalive._mixin`) feeds
events in -- a timer woke, a Pong arrived, the application sent a Ping -- and
carries out what comes back: send this Ping, fail the connection, or sleep
until :attr:`Heartbeat.wake_at`.

One deadline per connection is enough: :attr:`Heartbeat.wake_at` is always
the single next moment at which something may have to happen (the next
keepalive Ping or the deadline of the one in flight), so the adapter keeps one
entry on its timer wheel and moves it, instead of a ping timer and a timeout
timer per cycle.

The per-ping path, top to bottom: :meth:`Heartbeat.wake` says
:attr:`Verdict.PING` and hands out :attr:`Heartbeat.keepalive_payload`; the
Pong comes back through :meth:`Heartbeat.pong_received`, which measures the
latency and moves :attr:`Heartbeat.wake_at` to the next Ping.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

#: A timer may fire this many seconds early by the monotonic clock, because
#: the reactor schedules on its own (wall) clock; such a wake counts as due
#: rather than costing another timer round.
_EARLY_WAKE_SLACK = 0.001

#: How late (seconds) a deadline may fire before the verdict blames a stalled
#: reactor as well as, or instead of, the peer.
STALL_THRESHOLD = 0.1


class Verdict(enum.Enum):
    """What :meth:`Heartbeat.wake` decided."""

    #: Nothing due yet; sleep until :attr:`Heartbeat.wake_at`.
    WAIT = "wait"
    #: Send a Ping with :attr:`Heartbeat.keepalive_payload` now.
    PING = "ping"
    #: The Pong deadline has passed, but the reactor has not read the socket
    #: since: let it poll for I/O once (``callLater(0, ...)``), then call
    #: :meth:`Heartbeat.judge` with what it saw.  Twisted runs due timers
    #: *before* it reads, so without this a Pong that arrived while the
    #: reactor was busy would be read only after the verdict.
    RECHECK = "recheck"
    #: No Pong within ``ping_timeout``: fail the connection; details in
    #: :attr:`Heartbeat.timeout`.
    TIMEOUT = "timeout"


#: A peer that is demonstrably busy (mid-frame, or our Ping still queued
#: behind our own data it is reading) gets more time for its Pong, but never
#: more than this many ``ping_timeout``\ s after the Ping in total: a trickle
#: must not keep a connection alive forever without a Pong.
MAX_GRACE_FACTOR = 10


class Cause(enum.Enum):
    """Why a heartbeat timed out: a bounded set, fit for a metrics label."""

    #: The reactor ran the deadline on time and nothing came from the peer.
    PEER_SILENT = "peer_silent"
    #: The deadline ran late because the reactor was blocked, and the peer
    #: was still silent once the reactor had read the socket.
    REACTOR_STALLED = "reactor_stalled"
    #: The peer kept busy -- sending one frame, or reading our data ahead of
    #: the Ping -- but too slowly to answer within ``MAX_GRACE_FACTOR`` times
    #: ``ping_timeout``.
    PEER_TOO_SLOW = "peer_too_slow"


@dataclass(frozen=True)
class Evidence:
    """
    What the adapter saw of the connection when a Pong deadline passed.

    :ivar received_at: monotonic time of the last bytes from the peer.
    :ivar mid_frame: the peer is in the middle of sending a frame, so its Pong
        cannot come before that frame ends.
    :ivar frame_began_at: monotonic time the first bytes of that frame arrived.
    :ivar delivered: bytes of our outbound stream the peer has acknowledged
        (see :meth:`Heartbeat.queued_behind`), or ``None`` when the transport
        cannot tell.
    :ivar queued: bytes of ours still waiting to leave this host (transport
        and kernel), or ``None``.
    """

    received_at: float
    mid_frame: bool = False
    frame_began_at: float = 0.0
    delivered: int | None = None
    queued: int | None = None


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


class PingInFlight(ValueError):
    """A Ping with the same payload is already waiting for its Pong."""


# One shared empty result: most Pongs acknowledge no application ping, and the
# hot path should not allocate a list to say so.
_NOTHING: tuple[tuple[bytes, float], ...] = ()


class Heartbeat:
    """
    Keepalive pings, Pong matching and latency for one connection.

    :param ping_interval: seconds between keepalive Pings, measured Ping to
        Ping; ``None`` sends none (:meth:`ping_sent` still works).
    :param ping_timeout: seconds to wait for the Pong of a keepalive Ping;
        ``None`` never times out, and Pings then go out every interval
        whether or not Pongs come back.
    """

    __slots__ = (
        "_delivered",
        "_explicit",
        "_fired_at",
        "_next_ping_at",
        "_order",
        "keepalive_order",
        "keepalive_payload",
        "keepalive_position",
        "keepalive_sent_at",
        "latency",
        "ping_due_at",
        "ping_interval",
        "ping_timeout",
        "pongs",
        "timeout",
        "wake_at",
    )

    def __init__(self, ping_interval: float | None, ping_timeout: float | None) -> None:
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        #: Seconds of the last measured round trip; 0.0 before the first Pong.
        self.latency = 0.0
        #: Pongs that matched a Ping (each one measured :attr:`latency`).
        self.pongs = 0
        #: When the adapter must call :meth:`wake` next (monotonic seconds),
        #: or ``None`` when nothing is scheduled.
        self.wake_at: float | None = None
        #: Payload of the keepalive Ping in flight, or ``None``.
        self.keepalive_payload: bytes | None = None
        self.keepalive_sent_at = 0.0
        self.keepalive_order = 0
        #: Where the keepalive Ping ends in our outbound byte stream when it
        #: was queued behind our own data (:meth:`queued_behind`); else ``None``.
        self.keepalive_position: int | None = None
        #: Set once :meth:`judge` returned :attr:`Verdict.TIMEOUT`.
        self.timeout: Timeout | None = None
        self._next_ping_at: float | None = None
        #: When the keepalive Ping in flight was due (monotonic seconds); it
        #: went out at :attr:`keepalive_sent_at`, the difference is lateness.
        self.ping_due_at = 0.0
        # When the current deadline first fired (None: not yet), and how much
        # of our stream had left at the last judgement (progress detection).
        self._fired_at: float | None = None
        self._delivered: int | None = None
        # Every Ping gets a rank in sending order, so that "this Pong
        # acknowledges every earlier Ping" is exact even when a test clock
        # gives two Pings the same time.
        self._order = 0
        # Application Pings in flight: payload -> (rank, time sent).  Dicts keep
        # insertion order, which is sending order.
        self._explicit: dict[bytes, tuple[int, float]] = {}

    # -- timeline ---------------------------------------------------------

    def start(self, now: float, first_delay: float | None = None) -> None:
        """
        The connection is open: schedule the first keepalive Ping.

        :param now: the current monotonic time, seconds.
        :param first_delay: seconds until the first Ping; defaults to
            ``ping_interval``.  A shorter first delay spreads the Pings of
            connections that opened together (see the jitter option of the
            mixin) without ever delaying a verdict.
        """
        if self.ping_interval is None:
            return
        delay = self.ping_interval if first_delay is None else first_delay
        self._next_ping_at = self.wake_at = now + delay

    def wake(self, now: float) -> Verdict:
        """
        The timer set for :attr:`wake_at` fired: decide what to do.

        :param now: the current monotonic time, seconds.
        """
        if self.timeout is not None:
            return Verdict.TIMEOUT
        timeout = self.ping_timeout
        if self.keepalive_payload is not None and timeout is not None:
            deadline = self.wake_at
            assert deadline is not None
            if now + _EARLY_WAKE_SLACK < deadline:
                return Verdict.WAIT
            if self._fired_at is None:
                self._fired_at = now
            return Verdict.RECHECK
        next_ping_at = self._next_ping_at
        if next_ping_at is None:
            self.wake_at = None
            return Verdict.WAIT
        if now + _EARLY_WAKE_SLACK < next_ping_at:
            self.wake_at = next_ping_at
            return Verdict.WAIT
        self._send_keepalive(now)
        return Verdict.PING

    def judge(self, now: float, evidence: Evidence) -> Verdict:
        """
        After :attr:`Verdict.RECHECK`, with the socket read: time out, or
        postpone the deadline for a peer that is demonstrably busy.

        A peer mid-frame whose bytes are still arriving cannot send its Pong
        before the frame ends; a Ping still queued behind our own data that
        the peer is reading has not reached it yet.  Either way the peer is
        alive, and the deadline moves to ``ping_timeout`` after the latest
        sign of progress -- but never beyond ``MAX_GRACE_FACTOR`` times
        ``ping_timeout`` after the Ping.

        :return: :attr:`Verdict.WAIT` (Pong arrived meanwhile, or postponed:
            sleep until :attr:`wake_at`) or :attr:`Verdict.TIMEOUT`.
        """
        if self.timeout is not None:
            return Verdict.TIMEOUT
        timeout = self.ping_timeout
        if self.keepalive_payload is None or timeout is None:
            # The Pong was read during the extra reactor turn.
            self._fired_at = None
            return Verdict.WAIT
        sent_at = self.keepalive_sent_at
        limit = sent_at + timeout * MAX_GRACE_FACTOR
        progress_at = None
        if (
            evidence.mid_frame
            and evidence.received_at > sent_at
            # Only a frame the peer began before our Ping could reach it
            # holds its Pong back; one begun later is no excuse, or a peer
            # always half-way through some frame would never be judged.
            and evidence.frame_began_at <= sent_at + self.latency + STALL_THRESHOLD
        ):
            progress_at = evidence.received_at
        delivered = evidence.delivered
        baseline = self._delivered
        if (
            self.keepalive_position is not None
            and delivered is not None
            and baseline is not None
            and delivered > baseline
            and evidence.queued
        ):
            # Our Ping was queued behind our own data, some of it is still
            # waiting, and the peer acknowledged more since we last looked:
            # it is reading, slowly, and may not have read the Ping yet.
            progress_at = now
        self._delivered = delivered
        fired_at = self._fired_at if self._fired_at is not None else now
        self._fired_at = None
        deadline = self.wake_at if self.wake_at is not None else sent_at + timeout
        if progress_at is not None and progress_at + timeout > now:
            if now < limit:
                self.wake_at = min(progress_at + timeout, limit)
                return Verdict.WAIT
            cause = Cause.PEER_TOO_SLOW
        else:
            # The recheck round costs one reactor turn; only lateness beyond
            # the threshold says the reactor itself was not running.
            stalled = fired_at - deadline > STALL_THRESHOLD
            cause = Cause.REACTOR_STALLED if stalled else Cause.PEER_SILENT
        self.timeout = Timeout(
            cause=cause,
            waited=now - sent_at,
            lateness=max(0.0, fired_at - deadline),
            idle=now - evidence.received_at,
            queued=evidence.queued,
            latency=self.latency,
            ping_interval=self.ping_interval,
            ping_timeout=timeout,
        )
        self.wake_at = None
        return Verdict.TIMEOUT

    def queued_behind(self, position: int, delivered: int) -> None:
        """
        The keepalive Ping just sent is queued behind our own unsent data.

        :param position: where the Ping ends in our outbound byte stream.
        :param delivered: how much of that stream the peer had acknowledged.
        """
        self.keepalive_position = position
        self._delivered = delivered

    def _send_keepalive(self, now: float) -> None:
        interval = self.ping_interval
        assert interval is not None
        self._order += 1
        payload = self._order.to_bytes(4, "big")
        while payload in self._explicit:
            self._order += 1
            payload = self._order.to_bytes(4, "big")
        self.keepalive_payload = payload
        self.keepalive_sent_at = now
        self.keepalive_order = self._order
        self.keepalive_position = None
        self._fired_at = None
        self._delivered = None
        # The schedule runs on nominal times: a Ping sent a little late (timer
        # granularity, a busy reactor) does not push every later Ping back by
        # as much.  After a long stall it restarts from now.
        due = self._next_ping_at
        self.ping_due_at = due if due is not None and now - due < interval else now
        self._next_ping_at = self.ping_due_at + interval
        timeout = self.ping_timeout
        # With a timeout, the Pong deadline comes first: the next Ping waits
        # for the Pong (one keepalive Ping in flight).  Without one, Pings go
        # out every interval regardless, like ``websockets``.
        self.wake_at = now + (interval if timeout is None else timeout)

    # -- pongs ------------------------------------------------------------

    def pong_received(self, payload: bytes, now: float) -> tuple[tuple[bytes, float], ...]:
        """
        A Pong arrived.  It acknowledges its own Ping and every Ping sent
        before it (RFC 6455 lets a peer answer only the latest); unknown
        payloads are ignored.

        :return: the application Pings it acknowledged, as
            ``(payload, latency in seconds)`` pairs, in sending order.
        """
        if self.timeout is not None:
            return _NOTHING
        if payload == self.keepalive_payload:
            self.pongs += 1
            self.latency = now - self.keepalive_sent_at
            rank = self.keepalive_order
            self._keepalive_acknowledged(now)
            if not self._explicit:
                return _NOTHING
            return self._acknowledge_explicit(rank, now)
        entry = self._explicit.get(payload)
        if entry is None:
            return _NOTHING
        rank, sent_at = entry
        self.pongs += 1
        self.latency = now - sent_at
        if self.keepalive_payload is not None and self.keepalive_order < rank:
            self._keepalive_acknowledged(now)
        return self._acknowledge_explicit(rank, now)

    def _keepalive_acknowledged(self, now: float) -> None:
        due_at = self.ping_due_at
        self.keepalive_payload = None
        interval = self.ping_interval
        if interval is None or self.ping_timeout is None:
            # Without a timeout the Ping schedule never waited for Pongs.
            return
        # Ping to ping: the next one goes out an interval after this one was
        # due, or now if the round trip took longer than that.
        next_ping_at = due_at + interval
        if next_ping_at < now:
            next_ping_at = now
        self._next_ping_at = self.wake_at = next_ping_at

    def _acknowledge_explicit(self, rank: int, now: float) -> tuple[tuple[bytes, float], ...]:
        acknowledged = []
        explicit = self._explicit
        for payload, (their_rank, sent_at) in list(explicit.items()):
            if their_rank > rank:
                break
            del explicit[payload]
            acknowledged.append((payload, now - sent_at))
        return tuple(acknowledged)

    # -- application pings --------------------------------------------------

    def new_payload(self) -> bytes:
        """A fresh random 4-byte payload that no Ping in flight uses."""
        while True:
            payload = random.getrandbits(32).to_bytes(4, "big")
            if payload not in self._explicit and payload != self.keepalive_payload:
                return payload

    def ping_sent(self, payload: bytes, now: float) -> None:
        """
        The application sent a Ping with ``payload``.

        :raises PingInFlight: a Ping with this payload is already waiting.
        """
        if payload in self._explicit or payload == self.keepalive_payload:
            raise PingInFlight(f"a ping with payload {payload!r} is already waiting for its pong")
        self._order += 1
        self._explicit[payload] = (self._order, now)

    def forget(self, payload: bytes) -> None:
        """Stop waiting for the Pong of the application Ping ``payload``."""
        self._explicit.pop(payload, None)

    def stop(self) -> tuple[bytes, ...]:
        """
        The connection is going away: nothing more is scheduled.

        :return: the payloads of the application Pings still in flight.
        """
        self.wake_at = self._next_ping_at = None
        self.keepalive_payload = None
        pending = tuple(self._explicit)
        self._explicit.clear()
        return pending
