"""
``twistd wskeepalive --workers N``: N worker processes, each with its own
reactor, serving the same ``--listen`` ports.

One process holds at most as many connections as it may open files (20,000
on the machines this was measured on, a hard limit), and one reactor uses one
core.  Workers multiply both.

**Sharing the port: SO_REUSEPORT.**  Each worker binds and listens on its own
socket with ``SO_REUSEPORT``, and the Linux kernel spreads incoming
connections over the sockets by a hash of their addresses: evenly, whatever
each worker is doing.  The alternative -- one socket in the parent, inherited
by the workers and adopted with ``adoptStreamPort`` -- wakes every idle
worker on every connection and lets whichever calls ``accept()`` first take
as many as are queued; the spread then follows scheduling luck, and a worker
that gets more than its share reaches the per-process file limit first.
With ``SO_REUSEPORT`` a worker that dies takes only the connections waiting
in its own accept queue with it; the others keep accepting.

**The parent** (the twistd process) runs no reactor work of its own: before
starting the workers it binds (without listening) a ``SO_REUSEPORT`` socket
on every port -- so that a port in use or a ``tcp:0`` is dealt with once,
before any worker starts, and the port stays reserved while workers come and
go -- then it runs ``python -m twisted_keepalive._workers`` N times, passes
their log events on to its own log (each with ``worker`` and ``worker_pid``
fields), and replaces a worker that exits unexpectedly.  SIGTERM or SIGINT
to the parent sends SIGTERM to every worker; each closes its connections
with 1001 "going away" as a single server does, and the parent exits 0 once
all have exited.  A worker whose parent has gone (its stdin closes) shuts
down too.

**Metrics.**  With ``--metrics ENDPOINT``, each worker serves its own metrics
on a loopback port the parent picked, and the parent serves them all at
``ENDPOINT/metrics``, each series labelled ``worker="0"`` to ``"N-1"``, with
``twisted_keepalive_worker_pid``, ``_worker_up`` and
``_worker_restarts_total`` beside them: one scrape target, per-worker
figures, and totals with ``sum without (worker) (...)``.

Only ``tcp`` and ``tcp6`` endpoints can be shared this way: ``SO_REUSEPORT``
does not balance unix sockets, and TLS would have to be set up in each
worker from the endpoint's private state; terminate TLS in front of the
workers (nginx, HAProxy) instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from twisted.application.service import MultiService
from twisted.internet import defer, error
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, connectionDone
from twisted.logger import Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.resource import Resource

__all__ = ["WorkersService", "listen_problem", "main"]

_log = Logger(namespace="twisted_keepalive")

#: Endpoint types workers can share.
SHARED_ENDPOINT_TYPES = frozenset({"tcp", "tcp6"})

#: Seconds a replacement waits after a worker that ran less than
#: :data:`STABLE_AFTER` seconds exited; doubled for each such exit in a row,
#: up to :data:`MAX_RESTART_DELAY`, so a worker that cannot start does not
#: spin.
FIRST_RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 10.0
STABLE_AFTER = 10.0

#: Seconds the parent waits, beyond the close timeout, for workers to exit
#: after SIGTERM before it kills them.
_EXIT_GRACE = 5.0

#: Seconds the parent waits for one worker's metrics.
_SCRAPE_TIMEOUT = 5.0

#: Starts each log record on a worker's stdout (as jsonFileLogObserver writes them).
_RECORD_SEPARATOR = b"\x1e"


# -- ports ----------------------------------------------------------------------------


def listen_problem(description: str) -> str | None:
    """
    Why ``description`` cannot be shared by workers, or ``None`` if it can.
    """
    kind = description.split(":", 1)[0]
    if kind in SHARED_ENDPOINT_TYPES:
        return None
    if kind == "unix":
        why = "SO_REUSEPORT does not balance unix sockets"
    elif kind == "ssl":
        why = "terminate TLS in front of the workers (nginx, HAProxy) and listen on tcp"
    else:
        why = "only tcp and tcp6 endpoints can be shared"
    return f"--listen {description!r} cannot be shared by --workers: {why}"


@dataclass(frozen=True)
class _Address:
    """Where a shared port listens, from a tcp/tcp6 endpoint description."""

    family: socket.AddressFamily
    interface: str
    port: int
    backlog: int

    @classmethod
    def parse(cls, reactor: Any, description: str) -> _Address:
        from twisted.internet.endpoints import serverFromString

        endpoint = serverFromString(reactor, description)  # type: ignore[no-untyped-call]
        family = socket.AF_INET6 if description.startswith("tcp6:") else socket.AF_INET
        # TCP4ServerEndpoint and TCP6ServerEndpoint keep what they were given
        # in these attributes (since Twisted 10); refuse rather than guess.
        try:
            interface, port, backlog = endpoint._interface, endpoint._port, endpoint._backlog
        except AttributeError:
            raise ValueError(f"cannot read the address of {description!r}") from None
        if not interface:
            interface = "::" if family == socket.AF_INET6 else "0.0.0.0"
        return cls(family, interface, int(port), int(backlog))

    def socket(self) -> socket.socket:
        """A socket bound to this address with SO_REUSEPORT, not listening yet."""
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface, self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    def description(self) -> str:
        interface = self.interface.replace(":", "\\:")
        kind = "tcp6" if self.family == socket.AF_INET6 else "tcp"
        return f"{kind}:{self.port}:interface={interface}:backlog={self.backlog}"


class ReusePortEndpoint:
    """
    An ``IStreamServerEndpoint`` listening on its own ``SO_REUSEPORT`` socket,
    so that every worker can listen on the same port.
    """

    def __init__(self, reactor: Any, address: _Address) -> None:
        self._reactor = reactor
        self._address = address

    def listen(self, factory: Any) -> Deferred[Any]:
        sock = self._address.socket()
        try:
            sock.listen(self._address.backlog)
            sock.setblocking(False)
            # The reactor duplicates the descriptor; ours is closed below.
            port = self._reactor.adoptStreamPort(sock.fileno(), self._address.family, factory)
        finally:
            sock.close()
        return succeed(port)


# -- the parent -------------------------------------------------------------------------


class _Worker(ProcessProtocol):
    """One worker process, its output turned into the parent's log events."""

    transport: Any

    def __init__(self, pool: WorkersService, index: int) -> None:
        self.pool = pool
        self.index = index
        self.pid: int | None = None
        self.started_at = time.monotonic()
        self.ended: Deferred[None] = Deferred()
        self._records = b""
        self._errors = b""

    def connectionMade(self) -> None:
        self.pid = self.transport.pid
        _log.info(
            "worker {worker} started (pid {worker_pid})",
            worker=self.index,
            worker_pid=self.pid,
            keepalive_event="worker_start",
        )

    def outReceived(self, data: bytes) -> None:
        # jsonFileLogObserver writes each record as RS, JSON, newline; JSON
        # escapes newlines, so a newline ends a record.
        *records, self._records = (self._records + data).split(b"\n")
        for record in records:
            record = record.strip(_RECORD_SEPARATOR + b" \r")
            if record:
                self._publish(record)

    def errReceived(self, data: bytes) -> None:
        # Whatever a worker prints outside the log: a traceback as it dies.
        *lines, self._errors = (self._errors + data).split(b"\n")
        for line in lines:
            _log.error(
                "worker {worker} (pid {worker_pid}): {line}",
                worker=self.index,
                worker_pid=self.pid,
                line=line.decode("utf-8", "replace"),
            )

    def _publish(self, record: bytes) -> None:
        try:
            event = eventFromJSON(record.decode("utf-8", "replace"))
        except ValueError:
            return
        level = event.get("log_level")
        level_name = level.name if isinstance(level, type(LogLevel.info)) else "-"
        event["worker"] = self.index
        event["worker_pid"] = self.pid
        # Classic text logs print log_system in brackets: say which worker.
        event["log_system"] = (
            f"{event.get('log_namespace', '-')}#{level_name} worker {self.index} pid {self.pid}"
        )
        globalLogPublisher(event)

    def processEnded(self, reason: Failure) -> None:
        self.pool.worker_ended(self, reason)
        self.ended.callback(None)


class WorkersService(MultiService):
    """
    ``--workers N``: reserves the ports, runs N workers, replaces those that
    die, stops them all on shutdown, and serves their metrics together.

    :param settings: the validated settings (``settings.workers`` > 1).
    :param worker_argv: the ``wskeepalive`` options for every worker, without
        ``--listen``, ``--metrics`` and ``--workers`` (added here).
    :param reactor: the parent's reactor.
    """

    def __init__(self, settings: Any, worker_argv: Sequence[str], reactor: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.settings = settings
        self._worker_argv = list(worker_argv)
        self._reactor = reactor
        self._reserved: list[socket.socket] = []
        self._listen: list[str] = []
        #: Worker -> the loopback port its own metrics are served on.
        self._metrics_ports: dict[int, int] = {}
        self.workers: dict[int, _Worker] = {}
        self.restarts = dict.fromkeys(range(settings.workers), 0)
        self._failures_in_a_row = dict.fromkeys(range(settings.workers), 0)
        self._pending: dict[int, Any] = {}
        self._stopping = False
        if settings.metrics is not None:
            self._add_metrics(settings.metrics)

    # -- life cycle

    def startService(self) -> None:
        self._reserve_ports()
        _log.info(
            "starting {workers} workers on {listen}",
            workers=self.settings.workers,
            listen=", ".join(self._listen),
            keepalive_event="workers_start",
        )
        for index in range(self.settings.workers):
            self._spawn(index)
        super().startService()  # type: ignore[no-untyped-call]

    def _reserve_ports(self) -> None:
        for description in self.settings.listen:
            address = _Address.parse(self._reactor, description)
            try:
                sock = address.socket()
            except OSError as e:
                for reserved in self._reserved:
                    reserved.close()
                raise error.CannotListenError(  # type: ignore[no-untyped-call]
                    address.interface, address.port, e
                ) from None
            # tcp:0 -- every worker must listen on the port the kernel chose.
            address = replace(address, port=sock.getsockname()[1])
            self._reserved.append(sock)
            self._listen.append(address.description())

    def _spawn(self, index: int) -> None:
        self._pending.pop(index, None)
        argv = list(self._worker_argv)
        for description in self._listen:
            argv += ["--listen", description]
        if self.settings.metrics is not None:
            # A port free now; should another process take it first, the
            # worker fails to start and its replacement gets another.
            port = self._metrics_ports[index] = _free_loopback_port()
            argv += ["--metrics", f"tcp:{port}:interface=127.0.0.1"]
        worker = _Worker(self, index)
        self.workers[index] = worker
        self._reactor.spawnProcess(
            worker,
            sys.executable,
            [sys.executable, "-m", "twisted_keepalive._workers", json.dumps(argv)],
            env=dict(os.environ, TWISTED_KEEPALIVE_WORKER=str(index)),
            path=os.getcwd(),
            childFDs={0: "w", 1: "r", 2: "r"},
        )

    def worker_ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        status = _exit_status(reason)
        if self._stopping:
            if status != "exit status 0":
                _log.warn(
                    "worker {worker} (pid {worker_pid}) stopped with {status}",
                    worker=worker.index,
                    worker_pid=worker.pid,
                    status=status,
                    keepalive_event="worker_stop",
                )
            return
        ran = time.monotonic() - worker.started_at
        failures = self._failures_in_a_row[worker.index]
        failures = failures + 1 if ran < STABLE_AFTER else 0
        self._failures_in_a_row[worker.index] = failures
        delay = min(MAX_RESTART_DELAY, FIRST_RESTART_DELAY * 2 ** max(0, failures - 1))
        self.restarts[worker.index] += 1
        _log.error(
            "worker {worker} (pid {worker_pid}) exited unexpectedly ({status}) after "
            "{ran:.1f} s; starting a replacement in {delay:.1f} s",
            worker=worker.index,
            worker_pid=worker.pid,
            status=status,
            ran=ran,
            delay=delay,
            keepalive_event="worker_crash",
        )
        self._pending[worker.index] = self._reactor.callLater(delay, self._spawn, worker.index)

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self._stopping = True
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        await super().stopService()  # type: ignore[no-untyped-call]
        workers = list(self.workers.values())
        _log.info(
            "stopping {count} workers",
            count=len(workers),
            keepalive_event="workers_stop",
        )
        for worker in workers:
            _signal(worker, "TERM")
        ended = defer.DeferredList([w.ended for w in workers])
        try:
            await ended.addTimeout(self.settings.close_timeout + _EXIT_GRACE, self._reactor)
        except defer.TimeoutError:
            left = [w for w in workers if not w.ended.called]
            _log.warn(
                "killing {count} workers still running {seconds} s after SIGTERM",
                count=len(left),
                seconds=self.settings.close_timeout + _EXIT_GRACE,
                keepalive_event="workers_kill",
            )
            for worker in left:
                _signal(worker, "KILL")
            await defer.DeferredList([w.ended for w in left])
        for sock in self._reserved:
            sock.close()
        self._reserved = []
        from ._service import exit_zero_after_drain

        exit_zero_after_drain(self._reactor)

    # -- metrics

    def _add_metrics(self, description: str) -> None:
        from twisted.application.internet import StreamServerEndpointService
        from twisted.internet.endpoints import serverFromString
        from twisted.web.server import Site

        root = Resource()  # type: ignore[no-untyped-call]
        root.putChild(b"metrics", _WorkersMetrics(self))  # type: ignore[arg-type]
        endpoint = serverFromString(self._reactor, description)  # type: ignore[no-untyped-call]
        listener = StreamServerEndpointService(endpoint, Site(root))  # type: ignore[no-untyped-call]
        listener._raiseSynchronously = True
        listener.setServiceParent(self)  # type: ignore[no-untyped-call]

    async def scrape(self) -> bytes:
        """Every worker's metrics, labelled by worker, in the Prometheus text format."""
        from prometheus_client.exposition import generate_latest
        from prometheus_client.registry import CollectorRegistry

        indices = range(self.settings.workers)
        texts = await defer.DeferredList(
            [Deferred.fromCoroutine(self._scrape_one(i)) for i in indices], consumeErrors=True
        )
        scraped = {i: text for i, (ok, text) in zip(indices, texts, strict=True) if ok and text}
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(list(_merge(scraped, self))))
        return generate_latest(registry)

    async def _scrape_one(self, index: int) -> bytes | None:
        from twisted.internet.endpoints import TCP4ClientEndpoint

        port = self._metrics_ports.get(index)
        if index not in self.workers or port is None:
            return None
        fetch = _Fetch()
        factory: Any = Factory.forProtocol(lambda: fetch)
        factory.noisy = False  # one scrape, one connection: no "Starting factory" lines
        endpoint = TCP4ClientEndpoint(self._reactor, "127.0.0.1", port, timeout=_SCRAPE_TIMEOUT)
        await endpoint.connect(factory)
        raw = await fetch.done.addTimeout(_SCRAPE_TIMEOUT, self._reactor)
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


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _WorkersMetrics(Resource):
    """The parent's ``/metrics``: scrapes every worker on each request."""

    isLeaf = True

    def __init__(self, pool: WorkersService) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._pool = pool

    def render_GET(self, request: Any) -> Any:
        from twisted.web.server import NOT_DONE_YET

        def write(body: bytes) -> None:
            request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
            request.write(body)
            request.finish()

        def failed(failure: Failure) -> None:
            _log.failure("scraping the workers' metrics failed", failure)
            request.setResponseCode(500)
            request.finish()

        Deferred.fromCoroutine(self._pool.scrape()).addCallbacks(write, failed)
        return NOT_DONE_YET


class _Families:
    """A collector that hands out metric families already built."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> Iterator[Any]:
        return iter(self._families)


def _merge(scraped: Mapping[int, bytes], pool: WorkersService) -> Iterable[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    for index, text in scraped.items():
        for family in text_string_to_metric_families(text.decode("utf-8", "replace")):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                labels = {**sample.labels, "worker": str(index)}
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
        "Workers started again after they exited unexpectedly.",
        labels=["worker"],
    )
    for index in range(pool.settings.workers):
        worker = pool.workers.get(index)
        if worker is not None and worker.pid is not None:
            pids.add_metric([str(index)], worker.pid)
        up.add_metric([str(index)], 1 if index in scraped else 0)
        restarts.add_metric([str(index)], pool.restarts[index])
    yield from (pids, up, restarts)


def _signal(worker: _Worker, name: str) -> None:
    with contextlib.suppress(error.ProcessExitedAlready):
        worker.transport.signalProcess(name)


def _exit_status(reason: Failure) -> str:
    value = reason.value
    signal_number = getattr(value, "signal", None)
    if signal_number is not None:
        return f"signal {signal.Signals(signal_number).name}"
    return f"exit status {getattr(value, 'exitCode', None)}"


# -- a worker ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run one worker: ``python -m twisted_keepalive._workers '["--listen", ...]'``
    (the ``wskeepalive`` options as a JSON list; started by the parent, not
    by hand).  Logs to stdout as JSON records for the parent to pass on.
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, jsonFileLogObserver
    from twisted.python import usage

    from ._service import Options, build_service

    arguments = list(sys.argv[1:] if argv is None else argv)
    observer: Any = jsonFileLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    options = Options()
    try:
        options.parseOptions(json.loads(arguments[0]))
    except (usage.UsageError, IndexError, ValueError) as e:
        print(f"twisted_keepalive._workers: {e}", file=sys.stderr)
        return 2
    settings = options.settings
    addresses = {d: _Address.parse(reactor, d) for d in settings.listen}
    service = build_service(
        settings,
        reactor,
        endpoint=lambda d: cast(IStreamServerEndpoint, ReusePortEndpoint(reactor, addresses[d])),
    )
    status = _run(reactor, service)
    return status


def _run(reactor: Any, service: Any) -> int:
    from twisted.internet import stdio
    from twisted.internet.protocol import Protocol, connectionDone

    failed: list[Failure] = []

    def stop() -> None:
        if reactor.running and not getattr(reactor, "_stopped", False):
            reactor.stop()

    class _Parent(Protocol):
        # The parent holds our stdin: it closes when the parent goes away.
        def connectionLost(self, reason: Failure = connectionDone) -> None:
            stop()

    def start() -> None:
        try:
            service.startService()
        except Exception:
            failed.append(Failure())  # type: ignore[no-untyped-call]
            _log.failure("worker could not start", failed[-1])
            reactor.stop()
            return
        # The endpoints listen synchronously: from here the kernel may hand
        # this worker connections.
        _log.info("worker listening", keepalive_event="worker_listening")
        standard_io: Any = stdio.StandardIO
        standard_io(_Parent(), stdin=0, stdout=_devnull(), reactor=reactor)

    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: reactor.callFromThread(stop))
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: service.stopService() if service.running else None
    )
    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    return 1 if failed else 0


def _devnull() -> int:
    # StandardIO wants a writable descriptor; ours (stdout) carries the log.
    return os.open(os.devnull, os.O_WRONLY)


if __name__ == "__main__":
    sys.exit(main())
