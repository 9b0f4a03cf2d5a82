"""
One connection's keepalive on Autobahn: the :class:`Link` feeds the core
:class:`twisted_keepalive.core.heartbeat.Heartbeat` the connection's events
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
from .closing import (
    TIMEOUT_CLOSE_CODE,
    TIMEOUT_CLOSE_REASON,
    abort,
    log_timeout,
    send_timeout_close,
)
from .pongs import PongPacer, needs_pacing

_log = Logger(namespace="twisted_keepalive")


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
        "pongs",
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
        self.pongs: PongPacer | None = None

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
        self.head = probes.ping_head(4, self.masked)
        self.sock = probes.direct_socket(protocol.transport)

    def send_ping(self, payload: bytes) -> None:
        """An application Ping, through Autobahn's buffering but our masking."""
        protocol = self.protocol
        if self.head is None or not self.masked:
            protocol.sendPing(payload)
            return
        # Autobahn masks client frames with the random module; RFC 6455 5.3
        # asks for a key nobody can predict.
        frame = probes.ping_frame(probes.ping_head(len(payload), True), payload, True)
        protocol.sendData(frame)

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
        """Whether the peer's Ping is answered now (see :mod:`pongs`)."""
        pacer = self.pongs
        if pacer is None:
            if not needs_pacing(self.protocol.transport):
                return True
            pacer = self.pongs = PongPacer(
                self.protocol, self.clock, self.protocol._keepalive_answer_ping
            )
        return pacer.admit(payload)

    def pong_written(self) -> None:
        pacer = self.pongs
        if pacer is not None:
            pacer.written()

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
        send_timeout_close(protocol)
        # A dead peer never answers the Close, and a full send buffer may
        # never let it out: the abort is what frees the connection.
        self.abort_call = self.clock.callLater(config.close_timeout, self.abort)
        self.fail_waiters(self.closed)

    def abort(self) -> None:
        self.abort_call = None
        config = self.config
        abort(self.protocol, None if config is None else config.close_timeout)

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
        for name in ("recheck_call", "abort_call"):
            call = getattr(self, name)
            if call is not None:
                setattr(self, name, None)
                if call.active():
                    call.cancel()
        if self.pongs is not None:
            self.pongs.stop()
        self.heartbeat.halt()
        self.reschedule()
        stats = self.stats
        if stats is not None:
            self.stats = None
            stats.closed += 1
        self.fail_waiters(self.closed)

    def not_open(self) -> ConnectionClosed:
        """Why ``ping()`` cannot send now."""
        closed = self.closed
        if closed is not None:
            return ConnectionClosed(closed.code, closed.reason)
        return ConnectionClosed(None, "the WebSocket connection is closing")
