"""
One connection's keepalive on Autobahn: the :class:`Link` feeds the core
:class:`~twisted_keepalive.core.heartbeat.Heartbeat` the connection's events
and carries out what it returns -- the next deadline on the factory's timer
wheel, the keepalive Ping as a ready-made frame, the 1011 Close and the abort.
Waiters are fired only after the core has returned, so no callback of the
application re-enters it.

The per-Ping path, top to bottom: :meth:`Link.wheel_fired` →
:meth:`Link.wake` → :meth:`Link.send_keepalive`; then the Pong through
:meth:`Link.pong_received`, which moves the wheel slot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from ..core.config import KeepaliveConfig
from ..core.errors import ConnectionClosed
from ..core.heartbeat import Heartbeat
from ..core.stats import KeepaliveStats
from ..core.verdict import Evidence, Timeout, Verdict
from ..core.wheel import TimerWheel
from . import transport as probes

_log = Logger(namespace="twisted_keepalive")

#: Close code and reason of a keepalive timeout, as in ``websockets``.
TIMEOUT_CLOSE_CODE = 1011
TIMEOUT_CLOSE_REASON = "keepalive ping timeout"

#: Bytes; while more than this waits in Twisted's write buffer, a peer's Pings
#: are answered one Pong at a time: the next waits (coalesced to the latest
#: Ping, as RFC 6455 5.5.3 allows) until our previous Pong has left the
#: buffer.  A peer that pings but never reads then costs one Pong, not one per
#: Ping, and a peer that reads gets every answer at once.
PONG_BACKLOG_LIMIT = 64 * 1024

#: Seconds before looking again whether a parked Pong may go out; doubles up
#: to :data:`PONG_RETRY_MAX` while our buffer does not drain.
PONG_RETRY = 0.01
PONG_RETRY_MAX = 1.0


class Link:
    """The keepalive of one Autobahn connection: its core and its timers."""

    __slots__ = (
        "abort_call",
        "clock",
        "closed",
        "config",
        "frame",
        "frame_at",
        "head",
        "heartbeat",
        "masked",
        "now",
        "parked_ping",
        "pong_end",
        "pong_retry",
        "pong_retry_call",
        "protocol",
        "recheck_call",
        "rx_at",
        "slot",
        "sock",
        "stats",
        "timer_at",
        "tx_mark",
        "wheel",
    )

    def __init__(
        self,
        protocol: Any,
        clock: Any,
        now: Callable[[], float],
        wheel: TimerWheel,
        stats: KeepaliveStats | None,
    ) -> None:
        self.protocol = protocol
        self.clock = clock
        self.now = now
        self.wheel = wheel
        self.stats = stats
        self.heartbeat = Heartbeat()
        self.config: KeepaliveConfig | None = None
        self.closed: ConnectionClosed | None = None
        self.slot: int | None = None
        self.timer_at: float | None = None
        self.recheck_call: Any = None
        self.abort_call: Any = None
        self.rx_at = now()
        self.frame: Any = None
        self.frame_at = 0.0
        self.tx_mark = 0
        self.head: bytes | None = None
        self.masked = False
        self.sock: Any = None
        self.parked_ping: bytes | None = None
        self.pong_end = 0
        self.pong_retry = PONG_RETRY
        self.pong_retry_call: Any = None

    # -- the schedule -------------------------------------------------------

    def reschedule(self) -> None:
        """Put the connection on the wheel slot of the core's ``wake_at``."""
        wake_at = self.heartbeat.wake_at
        self.timer_at = wake_at
        wheel = self.wheel
        slot = self.slot
        if wake_at is None:
            if slot is not None:
                wheel.remove(self, slot)
                self.slot = None
            return
        new = wheel.slot_of(wake_at)
        if new == slot:
            return
        if slot is not None:
            # Moving is two dict operations: cheap enough for every Pong, so
            # a Ping is never more than one slot late.
            wheel.remove(self, slot)
        wheel.add(self, new)
        self.slot = new

    def wheel_fired(self) -> None:
        self.slot = None
        self.wake()

    def wake(self) -> None:
        heartbeat = self.heartbeat
        if not self.protocol_open():
            # Closing: Autobahn's closing handshake (and our abort, if we
            # started it) decides from here.
            heartbeat.halt()
        else:
            verdict = heartbeat.wake(self.now())
            if verdict is Verdict.PING:
                self.send_keepalive()
            elif verdict is Verdict.RECHECK:
                # Let the reactor poll the socket once before judging: it runs
                # due timers before reading, so a Pong that arrived while it
                # was blocked has not been read yet.
                self.recheck_call = self.clock.callLater(0, self.judge)
        self.reschedule()

    def protocol_open(self) -> bool:
        protocol = self.protocol
        return bool(protocol.state == protocol.STATE_OPEN)

    # -- the keepalive Ping ---------------------------------------------------

    def choose_framing(self) -> None:
        """Decide once how keepalive Pings are written on this connection."""
        protocol = self.protocol
        if getattr(protocol, "logFrames", False) or getattr(protocol, "logOctets", False):
            self.head = None  # Autobahn logs every frame: let it.
            return
        # FIN + Ping, then the length (4) with the mask bit on the client side.
        self.masked = not protocol.factory.isServer
        self.head = b"\x89\x84" if self.masked else b"\x89\x04"
        self.sock = probes.direct_socket(protocol.transport)

    def send_keepalive(self) -> None:
        heartbeat = self.heartbeat
        payload = heartbeat.keepalive_payload
        assert payload is not None
        protocol = self.protocol
        transport = protocol.transport
        traffic = protocol.trafficStats
        before = traffic.outgoingOctetsWireLevel
        # Whether our Ping waits behind our own data (a slow reader) matters
        # only if the application wrote since the last Ping: an idle
        # connection skips the measurement and its system call.
        queued = probes.unsent(transport) if before != self.tx_mark else 0
        head = self.head
        if head is None or protocol.send_queue:
            # Autobahn's own framing: it logs frames or octets, or it holds
            # chopped writes our Ping must queue behind.
            protocol.sendPing(payload)
        else:
            # The keepalive Ping is always 4 bytes: build the frame here
            # rather than through sendPing() -> sendFrame() -> sendData(),
            # which cost more than the rest of the keepalive cycle together.
            frame = probes.ping_frame(head, payload, self.masked)
            sock = self.sock
            if sock is not None and probes.buffer_is_empty(transport):
                probes.send_past_buffer(transport, sock, frame)
            else:
                transport.write(frame)
            traffic.outgoingOctetsWireLevel = before + len(frame)
        self.tx_mark = traffic.outgoingOctetsWireLevel
        if queued:
            # Remember how much had left when the Ping was queued, so that a
            # slow reader still draining our data is not taken for dead.
            heartbeat.queued_behind(before - queued)
        stats = self.stats
        if stats is not None:
            stats.keepalive_ping_sent(heartbeat.ping_lateness)

    # -- Pongs and the peer's Pings -------------------------------------------

    def pong_received(self, payload: bytes) -> None:
        heartbeat = self.heartbeat
        settled = heartbeat.pong_received(payload, self.now())
        if settled is None:
            return
        if heartbeat.wake_at != self.timer_at:
            self.reschedule()
        latency = heartbeat.latency
        stats = self.stats
        if stats is not None:
            stats.observe_latency(latency)
        for waiter, round_trip in settled:
            if not waiter.called:
                waiter.callback(round_trip)
        self.protocol.onLatency(latency)

    def admit_ping(self, payload: bytes) -> bool:
        """
        Whether the peer's Ping is to be answered now; if not, it is parked
        (the latest wins) and answered as soon as our previous Pong has left
        Twisted's buffer.
        """
        backlog = probes.transport_backlog(self.protocol.transport)
        if backlog is None or backlog <= PONG_BACKLOG_LIMIT or self.pong_left(backlog):
            self.parked_ping = None
            return True
        self.parked_ping = payload
        if self.pong_retry_call is None:
            self.pong_retry = PONG_RETRY
            self.pong_retry_call = self.clock.callLater(self.pong_retry, self.retry_parked_ping)
        return False

    def pong_written(self) -> None:
        """A Pong was just written: note where it ends in our stream."""
        self.pong_end = self.protocol.trafficStats.outgoingOctetsWireLevel

    def pong_left(self, backlog: int) -> bool:
        written: int = self.protocol.trafficStats.outgoingOctetsWireLevel
        return written - backlog >= self.pong_end

    def retry_parked_ping(self) -> None:
        self.pong_retry_call = None
        payload = self.parked_ping
        if payload is None or not self.protocol_open():
            self.parked_ping = None
            return
        backlog = probes.transport_backlog(self.protocol.transport)
        if backlog is None or backlog <= PONG_BACKLOG_LIMIT or self.pong_left(backlog):
            self.parked_ping = None
            self.protocol._keepalive_answer_ping(payload)
            return
        self.pong_retry = min(self.pong_retry * 2, PONG_RETRY_MAX)
        self.pong_retry_call = self.clock.callLater(self.pong_retry, self.retry_parked_ping)

    # -- verdicts ---------------------------------------------------------------

    def judge(self) -> None:
        self.recheck_call = None
        if not self.protocol_open():
            self.heartbeat.halt()
            self.reschedule()
            return
        protocol = self.protocol
        queued = probes.unsent(protocol.transport)
        written = protocol.trafficStats.outgoingOctetsWireLevel
        frame = getattr(protocol, "current_frame", None)
        evidence = Evidence(
            received_at=self.rx_at,
            mid_frame=frame is not None and frame is self.frame,
            frame_began_at=self.frame_at,
            delivered=None if queued is None else written - queued,
            queued=queued,
        )
        heartbeat = self.heartbeat
        if heartbeat.judge(self.now(), evidence) is Verdict.TIMEOUT:
            assert heartbeat.timeout is not None
            self.fail(heartbeat.timeout)
        else:
            self.reschedule()

    def fail(self, timeout: Timeout) -> None:
        """Carry out a timeout verdict: hook, 1011 Close, abort timer, waiters."""
        config = self.config
        assert config is not None
        protocol = self.protocol
        log_timeout(protocol.peer, timeout, config.close_timeout)
        stats = self.stats
        if stats is not None:
            stats.timeouts[timeout.cause] += 1
        self.closed = ConnectionClosed(TIMEOUT_CLOSE_CODE, TIMEOUT_CLOSE_REASON)
        self.reschedule()
        try:
            protocol.onKeepaliveTimeout(timeout)
        except Exception:
            _log.failure(
                "onKeepaliveTimeout of {protocol!r} raised; closing the connection anyway",
                protocol=protocol,
            )
        # What Autobahn hands onClose if the connection ends without the
        # peer's Close: 1006 'connection was closed uncleanly ("keepalive
        # ping timeout")'.
        protocol.wasClean = False
        protocol.wasNotCleanReason = TIMEOUT_CLOSE_REASON
        if self.protocol_open():
            send_timeout_close(protocol)
        # A dead peer never answers the Close, and a full send buffer may
        # never let it out: the abort is what frees the connection.
        self.abort_call = self.clock.callLater(config.close_timeout, self.abort)
        self.fail_waiters(self.closed)

    def abort(self) -> None:
        self.abort_call = None
        config = self.config
        _log.info(
            "keepalive: aborting the connection to {peer}: no closing handshake "
            "within {close_timeout} s",
            peer=self.protocol.peer,
            close_timeout=None if config is None else config.close_timeout,
            keepalive_event="abort",
        )
        transport = self.protocol.transport
        if hasattr(transport, "abortConnection"):
            transport.abortConnection()
        else:
            transport.loseConnection()

    # -- the end ----------------------------------------------------------------

    def fail_waiters(self, closed: ConnectionClosed) -> None:
        # The core hands each waiter out once; a waiter the application
        # already fired or cancelled (perhaps from another one's errback) is
        # left alone.
        for waiter in self.heartbeat.close():
            if not waiter.called:
                waiter.errback(ConnectionClosed(closed.code, closed.reason))

    def stop(self, closed: ConnectionClosed) -> None:
        """The connection is gone: cancel every timer, fail every waiter."""
        if self.closed is None:
            self.closed = closed
        for name in ("recheck_call", "abort_call", "pong_retry_call"):
            call = getattr(self, name)
            if call is not None:
                setattr(self, name, None)
                if call.active():
                    call.cancel()
        self.parked_ping = None
        self.heartbeat.halt()
        self.reschedule()
        stats = self.stats
        if stats is not None:
            self.stats = None
            stats.closed += 1
        self.fail_waiters(self.closed)

    def not_open(self) -> ConnectionClosed:
        """Why :meth:`ping` cannot send now."""
        closed = self.closed
        if closed is not None:
            return ConnectionClosed(closed.code, closed.reason)
        return ConnectionClosed(None, "the WebSocket connection is closing")


def send_timeout_close(protocol: Any) -> None:
    """Send Close 1011 and make ``close_timeout`` the closing handshake's bound."""
    # Autobahn's public sendClose() refuses 1011 and its _fail_connection()
    # drops TCP without a Close frame (failByDrop); sendCloseFrame() sends
    # 1011 and starts the closing handshake.
    protocol.sendCloseFrame(
        code=TIMEOUT_CLOSE_CODE, reasonUtf8=TIMEOUT_CLOSE_REASON.encode(), isReply=False
    )
    # Autobahn starts its own closing-handshake timer too, on txaio's batched
    # timer, which truncates deadlines to whole seconds: it would cut a slow
    # peer off anywhere from 0 to 1 s in, whatever close_timeout says.
    autobahn_timer = getattr(protocol, "closeHandshakeTimeoutCall", None)
    if autobahn_timer is not None:
        autobahn_timer.cancel()
        protocol.closeHandshakeTimeoutCall = None


def log_timeout(peer: str, timeout: Timeout, close_timeout: float) -> None:
    """One warning per keepalive timeout, with every figure as a field."""
    _log.warn(
        "keepalive ping timeout: no pong from {peer} within {waited:.3f} s "
        "(cause {cause_name}; timer {lateness:.3f} s late; peer idle {idle:.3f} s; "
        "{queued} bytes queued outbound; last latency {latency:.3f} s); "
        "failing the connection with 1011",
        peer=peer,
        cause_name=timeout.cause.value,
        cause=timeout.cause,
        waited=timeout.waited,
        lateness=timeout.lateness,
        idle=timeout.idle,
        queued=timeout.queued,
        latency=timeout.latency,
        ping_interval=timeout.ping_interval,
        ping_timeout=timeout.ping_timeout,
        close_timeout=close_timeout,
        keepalive_event="timeout",
    )
