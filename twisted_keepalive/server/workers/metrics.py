"""
The parent's ``/metrics`` under ``--workers N --metrics ENDPOINT``: every
worker's own metrics scraped over loopback on each request, each series
labelled with its worker; the parent's own process metrics (prometheus_client's
default registry) labelled ``worker="parent"``; and the workers' pids,
liveness, restarts and hangs beside them.  A worker's series pass through
as it serves them, whatever they are.

prometheus_client is imported only when a scrape is served: the parent
imports this module whether or not ``--metrics`` was given.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twisted_keepalive.serving import ListeningService, QuietSite

from ..health import Ready, health_children

__all__ = ["PARENT_LABEL", "Seat", "free_loopback_port", "merged_metrics_listener", "scrape"]

_log = Logger(namespace="twisted_keepalive")

#: The ``worker`` label of the parent's own series.
PARENT_LABEL = "parent"

#: Seconds the parent waits for one worker's metrics.
_SCRAPE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Seat:
    """
    One of the N workers, as its metrics show it.

    :ivar index: the worker's number, its ``worker`` label.
    :ivar pid: its process id; ``None`` while no process holds the seat.
    :ivar metrics_port: the loopback port of its own metrics; ``None`` while
        no process holds the seat.
    :ivar restarts: how many times the seat's worker was replaced.
    :ivar hung: how many times the seat's worker was killed for not
        answering the parent's probes.
    """

    index: int
    pid: int | None
    metrics_port: int | None
    restarts: int
    hung: int = 0


def free_loopback_port() -> int:
    """A loopback port free now, for a worker to serve its own metrics on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def merged_metrics_listener(
    description: str,
    seats: Callable[[], Sequence[Seat]],
    reactor: Any,
    ready: Ready,
    *,
    access_log: bool = False,
) -> ListeningService:
    """
    The service that serves every seat's metrics at ``/metrics`` on
    ``description``, and the parent's ``/healthz`` and ``/readyz``; with
    ``access_log``, each request is logged.
    """
    root = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"metrics", _MergedMetrics(seats, reactor))  # type: ignore[arg-type]
    for name, child in health_children(ready).items():
        root.putChild(name, child)  # type: ignore[arg-type]
    endpoint = serverFromString(reactor, description)  # type: ignore[no-untyped-call]
    site = QuietSite(root, access_log=access_log)
    return ListeningService(endpoint, site)


async def scrape(seats: Sequence[Seat], reactor: Any) -> bytes:
    """Every worker's metrics, labelled by worker, in the Prometheus text format."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import REGISTRY, CollectorRegistry

    texts = await defer.DeferredList(
        [Deferred.fromCoroutine(_scrape_one(seat, reactor)) for seat in seats],
        consumeErrors=True,
    )
    scraped = {
        str(seat.index): text
        for seat, (ok, text) in zip(seats, texts, strict=True)
        if ok and text
    }
    scraped[PARENT_LABEL] = generate_latest(REGISTRY)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(_merge(scraped, seats))))
    return generate_latest(registry)


class _MergedMetrics(Resource):
    """The parent's ``/metrics``: scrapes every worker on each request."""

    isLeaf = True

    def __init__(self, seats: Callable[[], Sequence[Seat]], reactor: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._seats = seats
        self._reactor = reactor

    def render_GET(self, request: Any) -> Any:
        # A scraper may give up before every worker has answered (its scrape
        # timeout, a busy machine): then there is nobody to answer.
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def write(body: bytes) -> None:
            if gone:
                return
            request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
            request.write(body)
            request.finish()

        def failed(failure: Failure) -> None:
            _log.failure("scraping the workers' metrics failed", failure)
            if gone:
                return
            request.setResponseCode(500)
            request.finish()

        scraping = scrape(self._seats(), self._reactor)
        Deferred.fromCoroutine(scraping).addCallbacks(write, failed)
        return NOT_DONE_YET


async def _scrape_one(seat: Seat, reactor: Any) -> bytes | None:
    if seat.metrics_port is None:
        return None
    fetch = _Fetch()
    factory: Any = Factory.forProtocol(lambda: fetch)
    factory.noisy = False  # one scrape, one connection: no "Starting factory" lines
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", seat.metrics_port, timeout=_SCRAPE_TIMEOUT)
    await endpoint.connect(factory)
    raw = await fetch.done.addTimeout(_SCRAPE_TIMEOUT, reactor)
    head, _, body = raw.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        return None
    return body


class _Fetch(Protocol):
    """``GET /metrics`` over HTTP/1.0: the whole response once the worker closes."""

    transport: Any

    def __init__(self) -> None:
        self.done: Deferred[bytes] = Deferred()
        self._received: list[bytes] = []

    def connectionMade(self) -> None:
        self.transport.write(b"GET /metrics HTTP/1.0\r\nHost: worker\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self._received.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.callback(b"".join(self._received))


class _Families:
    """A collector that hands out metric families already built."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> Iterator[Any]:
        return iter(self._families)


def _merge(scraped: Mapping[str, bytes], seats: Sequence[Seat]) -> Iterable[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    for label, text in scraped.items():
        for family in text_string_to_metric_families(text.decode("utf-8", "replace")):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                labels = {**sample.labels, "worker": label}
                merged.samples.append(sample._replace(labels=labels))
    yield from families.values()
    pids = GaugeMetricFamily(
        "twisted_keepalive_worker_pid", "Process id of each worker.", labels=["worker"]
    )
    up = GaugeMetricFamily(
        "twisted_keepalive_worker_up",
        "1 if the worker's metrics were read in this scrape, else 0.",
        labels=["worker"],
    )
    restarts = CounterMetricFamily(
        "twisted_keepalive_worker_restarts",
        "Workers started again after they exited unexpectedly or hung.",
        labels=["worker"],
    )
    hung = CounterMetricFamily(
        "twisted_keepalive_worker_hung",
        "Workers killed because their reactor answered no probe for --worker-timeout.",
        labels=["worker"],
    )
    for seat in seats:
        if seat.pid is not None:
            pids.add_metric([str(seat.index)], seat.pid)
        up.add_metric([str(seat.index)], 1 if str(seat.index) in scraped else 0)
        restarts.add_metric([str(seat.index)], seat.restarts)
        hung.add_metric([str(seat.index)], seat.hung)
    yield from (pids, up, restarts, hung)
