"""
Prometheus metrics for keepalive, from :class:`twisted_keepalive.KeepaliveStats`.

Needs the ``metrics`` extra (``pip install 'twisted-keepalive[metrics]'``).
The connections only bump plain integers; this collector turns them into
metric families when Prometheus scrapes, so the cost per ping does not depend
on whether anybody watches::

    from prometheus_client import REGISTRY
    from twisted_keepalive import collect_stats
    from twisted_keepalive.metrics import KeepaliveCollector, metrics_resource

    stats = collect_stats(factory)
    REGISTRY.register(KeepaliveCollector(stats))
    # serve metrics_resource() at /metrics with twisted.web

Metrics (all prefixed ``twisted_keepalive_``):

======================================  =========  ==============================
name                                    type       meaning
======================================  =========  ==============================
``connections_opened_total``            counter    handshakes completed
``connections_open``                    gauge      connections open now
``pings_sent_total``                    counter    keepalive and application Pings
``pongs_received_total``                counter    Pongs that matched a Ping
``heartbeat_timeouts_total{cause}``     counter    connections failed with 1011,
                                                   by cause: ``peer_silent``,
                                                   ``reactor_stalled``,
                                                   ``peer_too_slow``
``latency_seconds``                     histogram  measured round trips
``ping_lateness_seconds``               histogram  how long after its due time each
                                                   keepalive Ping went out
``reactor_lag_seconds``                 gauge      how late the latest timer probe
                                                   ran (with a :class:`ReactorLag`)
``reactor_lag_max_seconds``             gauge      the worst lag of the last 60 s
``reactor_lag_probes_seconds``          histogram  every probe's lag
======================================  =========  ==============================

Labels stay bounded: no per-peer or per-connection labels.  Scraping
changes nothing: several Prometheus servers see the same figures.

:class:`MetricsService` serves these together with prometheus_client's
default registry: its ``process_*`` (open descriptors against
``process_max_fds``, memory, CPU), ``python_*`` series, and anything the
application registered there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import REGISTRY, CollectorRegistry
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource

from .core.stats import LATENCY_BUCKETS, LATENESS_BUCKETS, KeepaliveStats, ReactorLag
from .serving import ListeningService, QuietSite

__all__ = ["KeepaliveCollector", "MetricsService", "Registries", "metrics_resource"]

#: What every metric name starts with: ``twisted_keepalive_pings_sent_total``.
PREFIX = "twisted_keepalive"


class KeepaliveCollector:
    """
    A Prometheus collector over one or more :class:`KeepaliveStats` (summed:
    a server with several factories reports once) and, optionally, a
    :class:`ReactorLag`.

    :param stats: one :class:`KeepaliveStats`, or several to report summed.
    :param lag: the reactor-lag probe to report too; default ``None``, none.
    """

    def __init__(
        self, stats: KeepaliveStats | Sequence[KeepaliveStats], lag: ReactorLag | None = None
    ) -> None:
        self._stats = [stats] if isinstance(stats, KeepaliveStats) else list(stats)
        self._lag = lag

    def collect(self) -> Iterator[Metric]:
        """
        The metrics now, summed over every stats object: counters, gauges
        and the latency (seconds) and ping-lateness histograms; with a lag
        probe, the reactor lag of the latest probe and the worst since the
        last scrape (reading the worst starts a new window).
        """
        stats = self._stats
        yield _counter("connections_opened", "WebSocket handshakes completed.", stats, "opened")
        yield GaugeMetricFamily(
            f"{PREFIX}_connections_open",
            "WebSocket connections open now.",
            value=sum(s.open for s in stats),
        )
        yield _counter("pings_sent", "Pings sent (keepalive and application).", stats, "pings_sent")
        yield _counter("pongs_received", "Pongs that matched a Ping sent.", stats, "pongs_received")
        timeouts = CounterMetricFamily(
            f"{PREFIX}_heartbeat_timeouts",
            "Connections failed with 1011 keepalive ping timeout, by cause.",
            labels=["cause"],
        )
        for cause in stats[0].timeouts if stats else ():
            timeouts.add_metric([cause.value], sum(s.timeouts[cause] for s in stats))
        yield timeouts
        yield _histogram(
            "latency_seconds",
            "Round-trip time of Ping/Pong exchanges, seconds.",
            LATENCY_BUCKETS,
            [s.latency_counts for s in stats],
            sum(s.latency_sum for s in stats),
        )
        yield _histogram(
            "ping_lateness_seconds",
            "How long after its due time each keepalive Ping went out, seconds.",
            LATENESS_BUCKETS,
            [s.lateness_counts for s in stats],
            sum(s.lateness_sum for s in stats),
        )
        if self._lag is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_reactor_lag_seconds",
                "How late the reactor ran its latest timer probe, seconds.",
                value=self._lag.last,
            )
            yield GaugeMetricFamily(
                f"{PREFIX}_reactor_lag_max_seconds",
                "The worst reactor lag of the last 60 seconds, seconds.",
                value=self._lag.recent_worst(),
            )
            yield _histogram(
                "reactor_lag_probes_seconds",
                "How late each reactor timer probe ran, seconds.",
                LATENESS_BUCKETS,
                [self._lag.counts],
                self._lag.total,
            )

    def describe(self) -> Iterable[Metric]:
        """The metrics' names and types, for ``CollectorRegistry.register``."""
        return list(self.collect())


def _counter(name: str, documentation: str, stats: list[KeepaliveStats], attribute: str) -> Metric:
    return CounterMetricFamily(
        f"{PREFIX}_{name}", documentation, value=sum(getattr(s, attribute) for s in stats)
    )


def _histogram(
    name: str,
    documentation: str,
    bounds: Sequence[float],
    counts: list[list[int]],
    total: float,
) -> Metric:
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for i, bound in enumerate(bounds):
        cumulative += sum(c[i] for c in counts)
        buckets.append((repr(bound), cumulative))
    cumulative += sum(c[-1] for c in counts)
    buckets.append(("+Inf", cumulative))
    return HistogramMetricFamily(
        f"{PREFIX}_{name}", documentation, buckets=buckets, sum_value=total
    )


class Registries:
    """
    Several registries served as one (what ``generate_latest`` reads:
    anything with ``collect()``).
    """

    def __init__(self, *registries: Any) -> None:
        #: The registries, collected in this order.
        self.registries = registries

    def collect(self) -> Iterator[Metric]:
        """Every registry's metrics, one registry after the other."""
        for registry in self.registries:
            yield from registry.collect()


def metrics_resource(registry: Any = REGISTRY) -> object:
    """
    A ``twisted.web`` resource that serves ``registry`` (or
    :class:`Registries`) in the Prometheus text format; put it at
    ``/metrics``.

    :param registry: what to serve; default prometheus_client's ``REGISTRY``.
    """
    from prometheus_client.twisted import MetricsResource

    return MetricsResource(registry)  # type: ignore[no-untyped-call]


class MetricsService(MultiService):
    """
    Serves ``/metrics`` for ``stats`` on a Twisted endpoint, from the reactor
    that runs the connections, and measures that reactor's lag while running.
    ``twistd wskeepalive --metrics ENDPOINT`` adds one::

        MetricsService("tcp:9100:interface=127.0.0.1", [stats], reactor)

    :param description: a Twisted server endpoint string.
    :param stats: the :class:`KeepaliveStats` to export (summed).
    :param reactor: the reactor.
    :param registry: where the collector is registered; a fresh registry by
        default, so that two services in one process never clash.
    :param default_registry: also serve prometheus_client's default
        ``REGISTRY`` (process and platform metrics, and the application's
        own); default ``True``.
    :param children: more resources to serve beside ``/metrics``, by path
        segment (``twistd wskeepalive`` adds ``/healthz`` and ``/readyz``);
        default ``None``, none.
    :param access_log: log every request (scrapes, probes) at info level;
        default ``False``.
    :ivar lag: the :class:`ReactorLag` probe, running while the service runs.
    :ivar registry: the registry the collector is in (``registry``, or the
        fresh one).
    """

    def __init__(
        self,
        description: str,
        stats: Sequence[KeepaliveStats],
        reactor: Any,
        registry: CollectorRegistry | None = None,
        *,
        default_registry: bool = True,
        children: Mapping[bytes, Resource] | None = None,
        access_log: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        self.lag = ReactorLag(reactor)
        self.registry.register(KeepaliveCollector(stats, self.lag))
        served: Any = self.registry
        if default_registry and self.registry is not REGISTRY:
            served = Registries(self.registry, REGISTRY)
        root = Resource()  # type: ignore[no-untyped-call]
        root.putChild(b"metrics", metrics_resource(served))  # type: ignore[arg-type]
        for name, child in (children or {}).items():
            root.putChild(name, child)  # type: ignore[arg-type]
        endpoint = serverFromString(reactor, description)  # type: ignore[no-untyped-call]
        site = QuietSite(root, access_log=access_log)
        ListeningService(endpoint, site).setServiceParent(self)  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        """Start the lag probe, then listen."""
        self.lag.start()
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Any:
        """Stop the lag probe and the listener: a Deferred that fires once it is closed."""
        self.lag.stop()
        return super().stopService()  # type: ignore[no-untyped-call]
