"""
The keepalive and heartbeat of one WebSocket connection, as plain data.

Nothing here touches a socket, a reactor or a framing library: times are
floats in seconds from one monotonic clock, payloads are ``bytes``, the
waiters of application Pings are opaque objects, and every decision is
returned as a value for the adapter to carry out once this object has
returned -- so no callback of the application ever runs while it iterates.

A connection's whole keepalive state is here: its :class:`Phase`, one ledger
of the Pings in flight (keepalive and application alike, each with its send
time and its waiter), the last latency, the verdict, and the single moment
:attr:`Heartbeat.wake_at` at which something may have to happen next.

The per-Ping path, top to bottom: the adapter's timer fires and calls
:meth:`Heartbeat.wake`, which says :attr:`Verdict.PING` with
:attr:`Heartbeat.keepalive_payload`; the Pong comes back through
:meth:`Heartbeat.pong_received`, which measures the latency, hands back the
waiters it settled and moves :attr:`Heartbeat.wake_at` to the next Ping.
"""

from __future__ import annotations

from typing import Any

from .errors import PingInFlight
from .ledger import (
    MAX_UNANSWERED_KEEPALIVES,
    Ledger,
    PendingPing,
    drop_oldest_keepalive,
    fresh_payload,
    settle_up_to,
)
from .phase import OPEN_PHASES, Phase
from .verdict import Deadline, Evidence, Timeout, Verdict, judge

#: A timer may fire this many seconds early by the monotonic clock, because
#: the reactor schedules on its own clock; such a wake counts as due rather
#: than costing another timer round.
EARLY_WAKE_SLACK = 0.001


# The hot path compares phases by identity with these module globals: an
# Enum's hash and its class attribute lookups are Python-level calls.
_IDLE = Phase.IDLE
_AWAITING_PONG = Phase.AWAITING_PONG
_CLOSING = Phase.CLOSING
_TIMED_OUT = Phase.TIMED_OUT
_CLOSED = Phase.CLOSED
_PING = Verdict.PING
_WAIT = Verdict.WAIT


# Most Pongs settle no application Ping; the hot path returns this one tuple.
_NOTHING: tuple[tuple[Any, float], ...] = ()

# The ledger of a connection with no Ping in flight, never written to.
_NO_PINGS: Ledger = {}


class Heartbeat:
    """
    Keepalive Pings, Pong matching, latency and verdicts for one connection.

    Call :meth:`open` when the connection opens (application Pings work from
    then on), :meth:`start` once its settings are known, :meth:`wake` when
    :attr:`wake_at` comes, :meth:`pong_received` for every Pong, and
    :meth:`close` when it goes away.
    """

    __slots__ = (
        "_deadline",
        "_delivered",
        "_fired_at",
        "_keepalive",
        "_ledger",
        "_next_ping_at",
        "_rank",
        "_unanswered",
        "latency",
        "phase",
        "ping_interval",
        "ping_lateness",
        "ping_timeout",
        "pongs",
        "timeout",
        "wake_at",
    )

    def __init__(self) -> None:
        self.phase = Phase.NEW
        #: Seconds between keepalive Pings (``None``: none), set by :meth:`start`.
        self.ping_interval: float | None = None
        #: Seconds to wait for a keepalive Pong (``None``: never time out).
        self.ping_timeout: float | None = None
        #: Seconds of the last measured round trip; 0.0 before the first Pong.
        self.latency = 0.0
        #: Pongs that matched a Ping (each one measured :attr:`latency`).
        self.pongs = 0
        #: Seconds by which the last keepalive Ping left after its due time.
        self.ping_lateness = 0.0
        #: When :meth:`wake` must run next (monotonic seconds), or ``None``.
        self.wake_at: float | None = None
        #: Why the heartbeat gave up, once :meth:`judge` said TIMEOUT.
        self.timeout: Timeout | None = None
        # The ledger exists only while a Ping is in flight: at rest (nearly
        # always, at intervals of seconds and round trips of milliseconds) a
        # connection holds no dict for it.
        self._ledger: Ledger | None = None
        self._rank = 0
        self._keepalive: PendingPing | None = None
        self._unanswered = 0
        self._next_ping_at: float | None = None
        self._deadline = 0.0
        self._fired_at = 0.0
        self._delivered: int | None = None

    # -- the timeline -------------------------------------------------------

    def open(self) -> None:
        """The connection is open: application Pings may go out."""
        if self.phase is Phase.NEW:
            self.phase = Phase.IDLE

    def start(
        self,
        now: float,
        ping_interval: float | None,
        ping_timeout: float | None,
        first_delay: float | None = None,
    ) -> None:
        """
        Schedule the first keepalive Ping (opening the connection if needed).

        :param now: the current monotonic time, seconds.
        :param ping_interval: seconds between keepalive Pings; ``None``: none.
        :param ping_timeout: seconds to wait for a keepalive Pong; ``None``
            never times out, and Pings then go out every interval regardless.
        :param first_delay: seconds until the first Ping; default
            ``ping_interval``.  A shorter first delay spreads the Pings of
            connections that opened together without delaying any verdict.
        """
        self.open()
        if self.phase is not Phase.IDLE:
            return
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        if ping_interval is None:
            return
        delay = ping_interval if first_delay is None else first_delay
        self._next_ping_at = self.wake_at = now + delay

    def wake(self, now: float) -> Verdict:
        """
        The timer set for :attr:`wake_at` fired: decide what to do.

        :param now: the current monotonic time, seconds.
        """
        phase = self.phase
        if phase is _AWAITING_PONG:
            if now + EARLY_WAKE_SLACK < self._deadline:
                return _WAIT
            self.phase = Phase.RECHECKING
            self._fired_at = now
            self.wake_at = None
            return Verdict.RECHECK
        if phase is not _IDLE:
            return _WAIT
        next_ping_at = self._next_ping_at
        if next_ping_at is None:
            self.wake_at = None
            return _WAIT
        if now + EARLY_WAKE_SLACK < next_ping_at:
            self.wake_at = next_ping_at
            return _WAIT
        self._send_keepalive(now, next_ping_at)
        return _PING

    def judge(self, now: float, evidence: Evidence) -> Verdict:
        """
        After :attr:`Verdict.RECHECK`, with the socket read: time out, or
        postpone the deadline (rules in :func:`twisted_keepalive.core.verdict.judge`).

        :return: :attr:`Verdict.WAIT` (the Pong came meanwhile, or the
            deadline moved to :attr:`wake_at`) or :attr:`Verdict.TIMEOUT`.
        """
        if self.phase is not Phase.RECHECKING:
            return Verdict.TIMEOUT if self.phase is Phase.TIMED_OUT else Verdict.WAIT
        keepalive = self._keepalive
        timeout = self.ping_timeout
        assert keepalive is not None and timeout is not None
        outcome = judge(
            now,
            Deadline(keepalive.sent_at, self._deadline, self._fired_at, self._delivered),
            evidence,
            latency=self.latency,
            ping_interval=self.ping_interval,
            ping_timeout=timeout,
        )
        if self._delivered is not None:
            self._delivered = evidence.delivered
        if isinstance(outcome, Timeout):
            self.phase = Phase.TIMED_OUT
            self.timeout = outcome
            self.wake_at = self._next_ping_at = None
            return Verdict.TIMEOUT
        self.phase = Phase.AWAITING_PONG
        self._deadline = self.wake_at = outcome
        return Verdict.WAIT

    def queued_behind(self, delivered: int) -> None:
        """
        The keepalive Ping just sent is queued behind our own unsent data, of
        which the peer had acknowledged ``delivered`` bytes: its deadline
        makes allowance for a peer still reading it.
        """
        self._delivered = delivered

    def halt(self) -> None:
        """The closing handshake began: no more keepalive Pings or verdicts."""
        if self.phase in OPEN_PHASES:
            self.phase = Phase.CLOSING
            self.wake_at = self._next_ping_at = None

    def close(self) -> tuple[Any, ...]:
        """
        The connection is gone, or the heartbeat failed it: forget every Ping.

        :return: the waiters of the application Pings still in flight, in
            sending order; each is returned by exactly one call.
        """
        self.phase = Phase.CLOSED
        self.wake_at = self._next_ping_at = None
        self._keepalive = None
        ledger = self._ledger
        self._ledger = None
        if not ledger:
            return ()
        return tuple(p.waiter for p in ledger.values() if p.waiter is not None)

    def _send_keepalive(self, now: float, due: float) -> None:
        interval = self.ping_interval
        assert interval is not None
        ledger = self._ledger
        if ledger is None:
            ledger = self._ledger = {}
        self._rank += 1
        payload = (self._rank & 0xFFFFFFFF).to_bytes(4, "big")
        while payload in ledger:
            self._rank += 1
            payload = (self._rank & 0xFFFFFFFF).to_bytes(4, "big")
        self._keepalive = ledger[payload] = PendingPing(payload, self._rank, now, None)
        self._delivered = None
        # The schedule runs on nominal times: a Ping sent a little late (the
        # timer grid, a busy reactor) does not push every later Ping back by
        # as much.  After a stall of an interval or more it restarts now.
        if now - due >= interval:
            due = now
        self.ping_lateness = now - due
        self._next_ping_at = due + interval
        timeout = self.ping_timeout
        if timeout is None:
            # Pings every interval regardless, like ``websockets``; the oldest
            # unanswered ones make room so the ledger stays bounded.
            self._unanswered += 1
            if self._unanswered > MAX_UNANSWERED_KEEPALIVES:
                drop_oldest_keepalive(ledger)
                self._unanswered -= 1
            self.wake_at = self._next_ping_at
        else:
            # One keepalive Ping in flight: the next one waits for its Pong.
            self.phase = _AWAITING_PONG
            self._deadline = self.wake_at = now + timeout

    # -- Pongs ----------------------------------------------------------------

    @property
    def keepalive_payload(self) -> bytes | None:
        """The payload of the latest keepalive Ping in flight, or ``None``."""
        keepalive = self._keepalive
        return None if keepalive is None else keepalive.payload

    def pong_received(self, payload: bytes, now: float) -> tuple[tuple[Any, float], ...] | None:
        """
        A Pong arrived.  It acknowledges its own Ping and every Ping sent
        before it (RFC 6455 lets a peer answer only the latest).

        :return: ``None`` if it matched no Ping in flight (unknown, duplicate
            or too late); else the application waiters it settled, as
            ``(waiter, latency in seconds)`` pairs in sending order, for the
            adapter to fire after this method has returned.
        """
        ledger = self._ledger
        if ledger is None:
            return None
        matched = ledger.get(payload)
        if matched is None:
            return None
        phase = self.phase
        if phase is _TIMED_OUT or phase is _CLOSED:
            return None
        self.pongs += 1
        self.latency = now - matched.sent_at
        keepalive = self._keepalive
        if len(ledger) == 1:
            self._ledger = None
            settled = _NOTHING if matched.waiter is None else ((matched.waiter, self.latency),)
            self._unanswered = 0
        else:
            settled, keepalives = settle_up_to(ledger, matched, now)
            if not ledger:
                self._ledger = None
            # Only Pings sent without a timeout are counted as unanswered.
            self._unanswered = max(0, self._unanswered - keepalives)
        if keepalive is not None and keepalive.rank <= matched.rank:
            self._keepalive_acknowledged(now)
        return settled

    def _keepalive_acknowledged(self, now: float) -> None:
        self._keepalive = None
        if self.phase is _CLOSING or self.ping_timeout is None:
            # Closing: no next Ping.  No timeout: the schedule never waited.
            return
        self.phase = _IDLE
        # Ping to Ping: the next one goes out an interval after this one was
        # due, or now if the round trip took longer than that.
        next_ping_at = self._next_ping_at
        if next_ping_at is None or next_ping_at < now:
            next_ping_at = now
        self._next_ping_at = self.wake_at = next_ping_at

    # -- application Pings ----------------------------------------------------

    @property
    def accepts_pings(self) -> bool:
        """Whether an application Ping may go out now (the connection is open)."""
        return self.phase in OPEN_PHASES

    @property
    def in_flight(self) -> int:
        """Pings waiting for their Pong, keepalive and application alike."""
        ledger = self._ledger
        return 0 if ledger is None else len(ledger)

    def new_payload(self) -> bytes:
        """A fresh random 4-byte payload that no Ping in flight uses."""
        return fresh_payload(self._ledger or _NO_PINGS)

    def ping_sent(self, payload: bytes, now: float, waiter: Any) -> None:
        """
        The application sent a Ping with ``payload``; ``waiter`` is what
        :meth:`pong_received` or :meth:`close` hands back for it.

        :raises PingInFlight: a Ping with this payload is already waiting.
        :raises RuntimeError: the connection is not open (:attr:`accepts_pings`).
        """
        if self.phase not in OPEN_PHASES:
            raise RuntimeError(f"no Ping can go out in phase {self.phase.value}")
        ledger = self._ledger
        if ledger is None:
            ledger = self._ledger = {}
        elif payload in ledger:
            raise PingInFlight(f"a ping with payload {payload!r} is already waiting for its pong")
        self._rank += 1
        ledger[payload] = PendingPing(payload, self._rank, now, waiter)

    def forget(self, payload: bytes, waiter: Any) -> None:
        """Stop waiting for the Pong of the application Ping ``payload`` of ``waiter``."""
        ledger = self._ledger
        ping = None if ledger is None else ledger.get(payload)
        # The waiter must match: a later Ping may have reused the payload.
        if ledger is not None and ping is not None and ping.waiter is waiter:
            del ledger[payload]
            if not ledger:
                self._ledger = None
