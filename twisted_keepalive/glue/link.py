"""
One connection's keepalive on Twisted, whatever the framing: the
:class:`KeepaliveLink` feeds the core :class:`Heartbeat
<twisted_keepalive.core.heartbeat.Heartbeat>` the connection's events and
carries out what it returns -- the next deadline on the factory's timer
wheel, the recheck turn, the timeout's warning, counters and abort timer, the
waiters of application Pings.  Waiters are fired only after the core has
returned, so no callback of the application re-enters it.

What differs between framings -- whether the connection is open, how a Ping
or a Close goes out, what the connection shows of the peer's progress, where
the application's hooks are -- is left to a subclass per framing
(``autobahn/link.py``, ``web/link.py``).

The per-Ping path, top to bottom: :meth:`KeepaliveLink.wheel_fired` →
:meth:`KeepaliveLink.wake` → the framing's ``send_keepalive``; then the Pong
through :meth:`KeepaliveLink.pong_received`, which moves the wheel slot.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from ..core.config import KeepaliveConfig
from ..core.errors import ConnectionClosed
from ..core.heartbeat import Heartbeat
from ..core.stats import KeepaliveStats
from ..core.verdict import Evidence, Timeout, Verdict
from ..core.wheel import TimerWheel, WheelEntry
from .closing import TIMEOUT_CLOSE_CODE, TIMEOUT_CLOSE_REASON, abort_transport, log_timeout

_log = Logger(namespace="twisted_keepalive")


class KeepaliveLink(WheelEntry):
    """The keepalive of one connection: its core, its timers, its verdicts."""

    #: What is logged when the application's timeout hook raises (the
    #: ``protocol`` field is :meth:`application`).
    TIMEOUT_HOOK_FAILED = "the keepalive timeout hook of {protocol!r} raised; closing anyway"

    __slots__ = (
        "abort_call",
        "closed",
        "config",
        "heartbeat",
        "recheck_call",
        "rx_at",
        "stats",
        "wheel",
    )

    def __init__(self, wheel: TimerWheel, stats: KeepaliveStats | None) -> None:
        super().__init__()
        self.wheel = wheel
        self.stats = stats
        self.heartbeat = Heartbeat()
        self.config: KeepaliveConfig | None = None
        self.closed: ConnectionClosed | None = None
        self.recheck_call: Any = None
        self.abort_call: Any = None
        #: When the peer's last bytes arrived (monotonic seconds).
        self.rx_at = wheel.now()
        if stats is not None:
            stats.opened += 1

    @property
    def clock(self) -> Any:
        """The ``IReactorTime`` of this connection's timers: its wheel's."""
        return self.wheel.clock

    @property
    def now(self) -> Callable[[], float]:
        """The monotonic clock (seconds) of its deadlines: its wheel's."""
        return self.wheel.now

    # -- what each framing provides -------------------------------------------

    def is_open(self) -> bool:
        """Whether the connection is open (no Close sent or received)."""
        raise NotImplementedError

    def send_keepalive(self) -> None:
        """Write the keepalive Ping (``heartbeat.keepalive_payload``)."""
        raise NotImplementedError

    def send_ping(self, payload: bytes) -> None:
        """Write an application Ping."""
        raise NotImplementedError

    def evidence(self) -> Evidence:
        """What the connection shows of the peer's progress, for a verdict."""
        raise NotImplementedError

    def send_timeout_close(self) -> None:
        """Send Close 1011 "keepalive ping timeout" through the framing's route."""
        raise NotImplementedError

    def peer(self) -> str:
        """The peer's address, for logs."""
        raise NotImplementedError

    def tcp_transport(self) -> Any:
        """The transport to abort when the closing handshake does not end."""
        raise NotImplementedError

    def application(self) -> Any:
        """The application's protocol object, for logs."""
        raise NotImplementedError

    def report_latency(self, latency: float) -> None:
        """Tell the application about a measured round trip (seconds)."""

    def report_timeout(self, timeout: Timeout) -> None:
        """Tell the application that the heartbeat gave up, before the Close."""

    # -- the schedule -------------------------------------------------------

    def begin(self, config: KeepaliveConfig) -> None:
        """The connection opened with ``config``: schedule the first Ping."""
        self.config = config
        interval = config.ping_interval
        first_delay = None
        if interval is not None and config.first_ping_spread:
            first_delay = interval * (1.0 - config.first_ping_spread * random.random())
        self.heartbeat.start(self.wheel.now(), interval, config.ping_timeout, first_delay)
        self.reschedule()

    def reschedule(self) -> None:
        """Put the connection on the wheel slot of the core's ``wake_at``."""
        wake_at = self.heartbeat.wake_at
        if wake_at is None:
            self.wheel.remove(self)
            return
        wheel = self.wheel
        new = wheel.slot_of(wake_at)
        slot = self.wheel_slot
        if slot is None or slot.number != new:
            # Moving is a few attribute writes: cheap enough for every Pong,
            # so a Ping is never more than one slot late.
            wheel.add(self, new)

    def wheel_fired(self) -> None:
        """The wheel's slot for this connection came due: it is off the wheel now."""
        self.wake()

    def wake(self) -> None:
        """
        A deadline came due: send the keepalive Ping, or judge after one more
        reactor turn, as the core says (a closing connection's heartbeat just
        halts); then reschedule.
        """
        heartbeat = self.heartbeat
        if not self.is_open():
            # Closing: the closing handshake (and our abort, if we started
            # it) decides from here.
            heartbeat.halt()
        else:
            verdict = heartbeat.wake(self.wheel.now())
            if verdict is Verdict.PING:
                self.send_keepalive()
                stats = self.stats
                if stats is not None:
                    stats.keepalive_ping_sent(heartbeat.ping_lateness)
            elif verdict is Verdict.RECHECK:
                # Let the reactor poll the socket once before judging: it runs
                # due timers before reading, so a Pong that arrived while it
                # was blocked has not been read yet.
                self.recheck_call = self.wheel.clock.callLater(0, self.judge)
        self.reschedule()

    # -- Pongs ------------------------------------------------------------------

    def pong_received(self, payload: bytes) -> None:
        """
        A Pong arrived: settle the Pings it answers (their waiters fire with
        the round trip in seconds) and report the new latency.
        """
        heartbeat = self.heartbeat
        settled = heartbeat.pong_received(payload, self.wheel.now())
        if settled is None:
            return
        self.reschedule()
        latency = heartbeat.latency
        stats = self.stats
        if stats is not None:
            stats.observe_latency(latency)
        for waiter, round_trip in settled:
            if not waiter.called:
                waiter.callback(round_trip)
        self.report_latency(latency)

    # -- verdicts ---------------------------------------------------------------

    def judge(self) -> None:
        """The recheck turn: fail the connection if the core's verdict is a timeout."""
        self.recheck_call = None
        heartbeat = self.heartbeat
        if not self.is_open():
            heartbeat.halt()
            self.reschedule()
            return
        if heartbeat.judge(self.wheel.now(), self.evidence()) is Verdict.TIMEOUT:
            assert heartbeat.timeout is not None
            self.fail(heartbeat.timeout)
        else:
            self.reschedule()

    def fail(self, timeout: Timeout) -> None:
        """Carry out a timeout verdict: hook, 1011 Close, abort timer, waiters."""
        config = self.config
        assert config is not None
        log_timeout(self.peer(), timeout, config.close_timeout)
        stats = self.stats
        if stats is not None:
            stats.timeouts[timeout.cause] += 1
        self.closed = ConnectionClosed(TIMEOUT_CLOSE_CODE, TIMEOUT_CLOSE_REASON)
        self.reschedule()
        try:
            self.report_timeout(timeout)
        except Exception:
            _log.failure(self.TIMEOUT_HOOK_FAILED, protocol=self.application())
        self.send_timeout_close()
        self.arm_abort()
        self.fail_waiters(self.closed)

    def arm_abort(self) -> None:
        """
        Abort the TCP connection ``close_timeout`` seconds from now, unless it
        has gone by then: a dead peer never answers the Close, and a full send
        buffer may never let it out.
        """
        config = self.config
        if self.abort_call is None and config is not None:
            self.abort_call = self.wheel.clock.callLater(config.close_timeout, self.abort)

    def abort(self) -> None:
        """The closing handshake did not end in ``close_timeout`` seconds: abort TCP."""
        self.abort_call = None
        config = self.config
        abort_transport(
            self.tcp_transport(), self.peer(), None if config is None else config.close_timeout
        )

    # -- the end ----------------------------------------------------------------

    def fail_waiters(self, closed: ConnectionClosed) -> None:
        """Fail every pending application Ping with a copy of ``closed``."""
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
        self.heartbeat.halt()
        self.reschedule()
        stats = self.stats
        if stats is not None:
            self.stats = None
            stats.closed += 1
        self.fail_waiters(self.closed)

    def not_open(self) -> ConnectionClosed:
        """Why an application ``ping()`` cannot send now."""
        closed = self.closed
        if closed is not None:
            return ConnectionClosed(closed.code, closed.reason)
        return ConnectionClosed(None, "the WebSocket connection is closing")
