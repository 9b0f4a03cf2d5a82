"""
Counters an operator can watch, kept as plain numbers.

The hot path only bumps integers here; turning them into Prometheus metrics
(:mod:`twisted_keepalive.metrics`) happens when somebody scrapes, so the core
needs no metrics library and pays almost nothing per ping.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from .verdict import Cause

#: Upper bounds (seconds) of the round-trip histogram: from sub-millisecond
#: LAN and loopback to multi-second congested mobile links.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
)  # fmt: skip

#: Upper bounds (seconds) of the ping-lateness histogram: how long after its
#: due time each keepalive Ping went out.  The timer grid alone accounts for
#: up to 20 ms; more means the reactor was busy.
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class KeepaliveStats:
    """
    What the keepalive of every connection of a factory did, as counters.

    Attach one to a factory with :func:`collect_stats`; every connection built
    afterwards reports into it.

    :ivar opened: connections that completed the opening handshake.
    :ivar closed: of those, connections that have gone away.
    :ivar pings_sent: keepalive and application Pings sent.
    :ivar pongs_received: Pongs that matched a Ping (each measured a latency).
    :ivar timeouts: heartbeat timeouts by :class:`twisted_keepalive.Cause`.
    :ivar latency_counts: how many round trips fell in each bucket of
        :data:`LATENCY_BUCKETS` (not cumulative; one extra slot for "more").
    :ivar latency_sum: seconds, the sum of all measured round trips.
    :ivar lateness_counts: keepalive Pings by how late they went out, per
        bucket of :data:`LATENESS_BUCKETS` (not cumulative; one extra slot).
    :ivar lateness_sum: seconds, the sum of all keepalive Pings' lateness.
    """

    __slots__ = (
        "closed",
        "latency_counts",
        "latency_sum",
        "lateness_counts",
        "lateness_sum",
        "opened",
        "pings_sent",
        "pongs_received",
        "timeouts",
    )

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.pings_sent = 0
        self.pongs_received = 0
        self.timeouts: dict[Cause, int] = dict.fromkeys(Cause, 0)
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.lateness_counts = [0] * (len(LATENESS_BUCKETS) + 1)
        self.lateness_sum = 0.0

    @property
    def open(self) -> int:
        """Connections open now."""
        return self.opened - self.closed

    def observe_latency(self, seconds: float) -> None:
        """Count one measured round trip."""
        self.pongs_received += 1
        self.latency_sum += seconds
        self.latency_counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def keepalive_ping_sent(self, lateness: float) -> None:
        """
        Count one keepalive Ping that went out ``lateness`` seconds after its
        due time (application Pings only bump :attr:`pings_sent`).
        """
        self.pings_sent += 1
        self.lateness_sum += lateness
        self.lateness_counts[bisect_left(LATENESS_BUCKETS, lateness)] += 1


def collect_stats(factory: Any) -> KeepaliveStats:
    """
    The :class:`KeepaliveStats` of ``factory``, attached now if it has none.

    Connections built by the factory afterwards report into it.
    """
    stats = getattr(factory, "keepalive_stats", None)
    if stats is None:
        stats = factory.keepalive_stats = KeepaliveStats()
    return stats


class ReactorLag:
    """
    How late the reactor runs its timers: a timer every ``interval`` seconds
    notes how long after its due time it actually ran (what Node's
    ``prom-client`` calls event-loop lag).

    A blocked reactor -- CPU work or a blocking call in a handler -- delays
    every connection's deadlines by the same amount; this is the number that
    tells a stalled server from dead peers.  One timer per process: cheap
    enough to leave on.

    Reading it changes nothing, so any number of scrapers see the same
    figures: every probe goes into a histogram (:attr:`counts`, over
    :data:`LATENESS_BUCKETS`), and :meth:`recent_worst` is the worst lag of
    the last ``window`` seconds.

    :param clock: the reactor (an ``IReactorTime``).
    :param interval: seconds between probes; default 0.5.
    :param now: the monotonic clock; default ``time.monotonic``.
    :param window: seconds that :meth:`recent_worst` looks back; default 60.
    :ivar last: seconds, the lag of the latest probe.
    :ivar worst: seconds, the largest lag since :meth:`take_worst` last ran.
    :ivar counts: probes per bucket of :data:`LATENESS_BUCKETS` (not
        cumulative; one extra slot for "more").
    :ivar total: seconds, the sum of every probe's lag.
    """

    #: The window is kept as this many slices, each with its worst lag.
    SLICES = 12

    def __init__(
        self,
        clock: Any,
        interval: float = 0.5,
        now: Callable[[], float] = time.monotonic,
        window: float = 60.0,
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._now = now
        self._call: Any = None
        self._due = 0.0
        self._slice = window / self.SLICES
        #: (slice number, worst lag in it), newest last.
        self._slices: list[tuple[int, float]] = []
        self.last = 0.0
        self.worst = 0.0
        self.counts = [0] * (len(LATENESS_BUCKETS) + 1)
        self.total = 0.0

    def start(self) -> None:
        """Start probing."""
        if self._call is None:
            self._schedule()

    def stop(self) -> None:
        """Stop probing (idempotent)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def take_worst(self) -> float:
        """The worst lag since the last call, and start a new window."""
        worst, self.worst = self.worst, 0.0
        return worst

    def recent_worst(self) -> float:
        """Seconds, the worst lag of the last ``window`` seconds (0 if none)."""
        oldest = self._slice_now() - self.SLICES + 1
        return max((worst for number, worst in self._slices if number >= oldest), default=0.0)

    def _slice_now(self) -> int:
        return int(self._now() // self._slice)

    def _schedule(self) -> None:
        self._due = self._now() + self._interval
        self._call = self._clock.callLater(self._interval, self._probe)

    def _probe(self) -> None:
        lag = max(0.0, self._now() - self._due)
        self.last = lag
        if lag > self.worst:
            self.worst = lag
        self.counts[bisect_left(LATENESS_BUCKETS, lag)] += 1
        self.total += lag
        number = self._slice_now()
        if self._slices and self._slices[-1][0] == number:
            if lag > self._slices[-1][1]:
                self._slices[-1] = (number, lag)
        else:
            self._slices.append((number, lag))
            del self._slices[: -self.SLICES]
        self._schedule()
