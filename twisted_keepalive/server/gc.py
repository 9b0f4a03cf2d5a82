"""
``--gc``: Python's cyclic garbage collector run the way a server of many
long-lived connections needs (:class:`GarbageCollection`), and its pauses as
Prometheus metrics (:func:`gc_collector`).
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from twisted.application.service import Service

__all__ = ["GC_POLICIES", "GC_PYTHON", "GC_SCHEDULED", "GarbageCollection", "gc_collector"]

#: ``--gc`` policies: see :class:`GarbageCollection`.
GC_SCHEDULED = "scheduled"
GC_PYTHON = "python"
GC_POLICIES = (GC_SCHEDULED, GC_PYTHON)

#: Seconds between the freezes of ``--gc scheduled``: whatever has lived
#: this long is never walked by an automatic collection again.
GC_FREEZE_EVERY = 1.0

#: Seconds: ``--gc scheduled`` collects everything at least this often...
GC_FULL_PERIOD = 300.0

#: ...and at most this often, however many connections close.  A full
#: collection walks every object of every connection (0.3-0.6 s at 19,800
#: connections, measured), so this caps the time the reactor spends in
#: them at about 1 %: the share of Pings that may be late without moving
#: the 99th percentile of ping lateness.
GC_FULL_MIN_SPACING = 60.0

#: Upper bounds (seconds) of the garbage-collector pause histogram.
GC_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GarbageCollection(Service):
    """
    Python's cyclic garbage collector run the way a server of many long-lived
    connections needs, and a record of how long each of its passes stopped
    the reactor.

    Python collects its oldest generation whenever the objects that reached
    it since the last time exceed a quarter of it, and that walks every
    tracked object: every connection's, 0.3-0.6 s at 19,800 connections.
    Objects that outlive the young collections reach that quarter quickly:
    with one timer per connection per Ping living an interval (what the
    mixin had before its timer wheel; what many applications do), 19,800
    connections pinged every 5 s, Python's defaults collected everything 3
    times in 120 s and 1 % of the Pings left more than 50 ms late; under
    this policy, never, and none did.  The collector cannot simply be
    switched off: a closed Autobahn connection is cyclic garbage (its
    ``is_closed`` Deferred holds the protocol), which only a collection
    frees.

    With ``policy=GC_SCHEDULED``:

    - every :data:`GC_FREEZE_EVERY` seconds, everything alive is frozen
      (:func:`gc.freeze`, constant time): Python's automatic collections
      keep running with its own thresholds, but only over what is younger --
      they stay short, and short-lived cycles are still freed at once;
    - every :data:`GC_FULL_PERIOD` seconds -- or once connections amounting
      to a quarter of those open have closed, but never twice within
      :data:`GC_FULL_MIN_SPACING` seconds -- everything is unfrozen and
      collected: the one pass that frees closed connections, at a bounded
      rate.

    ``policy=GC_PYTHON`` leaves the collector alone.  Either way the pauses
    are recorded (:attr:`pause_counts`), for ``/metrics``.

    :param policy: :data:`GC_SCHEDULED` or :data:`GC_PYTHON`.
    :param reactor: schedules the freezes and collections.
    :param connections: how many connections are open now.
    :param closed: how many connections have closed since the start.
    :ivar pause_counts: per generation, how many collections fell in each
        bucket of :data:`GC_PAUSE_BUCKETS` (not cumulative; one extra slot).
    :ivar pause_sums: per generation, seconds spent collecting.
    :ivar scheduled: full collections this policy ran.
    """

    def __init__(
        self,
        policy: str,
        reactor: Any,
        connections: Callable[[], int],
        closed: Callable[[], int],
    ) -> None:
        self.policy = policy
        self._reactor = reactor
        self._connections = connections
        self._closed = closed
        self._call: Any = None
        self._started_at = 0.0
        self._full_at = 0.0
        self._closed_at_full = 0
        self.pause_counts = {g: [0] * (len(GC_PAUSE_BUCKETS) + 1) for g in range(3)}
        self.pause_sums = dict.fromkeys(range(3), 0.0)
        self.scheduled = 0

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        gc.callbacks.append(self._observe)
        if self.policy == GC_SCHEDULED:
            # Once the reactor runs (twistd starts services before, and only
            # then handles SIGTERM): start-up is over, collect it and freeze it.
            self._call = self._reactor.callLater(0, self._first_collection)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self.policy == GC_SCHEDULED:
            # Shutting down: what closes now is freed the usual way.
            gc.unfreeze()

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        # Called by the collector itself at the start and the end of every
        # pass: a clock read and a few integer updates.
        if phase == "start":
            self._started_at = time.perf_counter()
            return
        pause = time.perf_counter() - self._started_at
        generation = info["generation"]
        self.pause_sums[generation] += pause
        self.pause_counts[generation][bisect_left(GC_PAUSE_BUCKETS, pause)] += 1

    def _first_collection(self) -> None:
        self._collect_everything()
        self._call = self._reactor.callLater(GC_FREEZE_EVERY, self._tick)

    def _tick(self) -> None:
        since = time.monotonic() - self._full_at
        closed = self._closed() - self._closed_at_full
        if since >= GC_FULL_PERIOD or (
            since >= GC_FULL_MIN_SPACING and closed > self._connections() // 4
        ):
            self._collect_everything()
        else:
            gc.freeze()
        self._call = self._reactor.callLater(GC_FREEZE_EVERY, self._tick)

    def _collect_everything(self) -> None:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.scheduled += 1
        self._full_at = time.monotonic()
        self._closed_at_full = self._closed()


def gc_collector(collection: GarbageCollection) -> Any:
    # Only with --metrics, so prometheus_client is imported only then.
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    class Collector:
        def collect(self) -> Iterator[Any]:
            pauses = HistogramMetricFamily(
                "twisted_keepalive_gc_pause_seconds",
                "How long each pass of Python's garbage collector stopped the reactor, "
                "by generation (2: a full collection), seconds.",
                labels=["generation"],
            )
            for generation, counts in collection.pause_counts.items():
                bounds = (*map(repr, GC_PAUSE_BUCKETS), "+Inf")
                cumulative = 0
                buckets: list[tuple[str, float]] = []
                for bound, count in zip(bounds, counts, strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative))
                pauses.add_metric(
                    [str(generation)], buckets, sum_value=collection.pause_sums[generation]
                )
            yield pauses
            yield CounterMetricFamily(
                "twisted_keepalive_gc_scheduled_collections",
                "Full collections run by --gc scheduled.",
                value=collection.scheduled,
            )

    return Collector()
