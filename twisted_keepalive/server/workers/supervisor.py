"""
:class:`WorkersService`, the parent of ``--workers N``: reserves the ports,
runs N workers, replaces those that die or hang, replaces them all one at a
time on SIGHUP, stops them all on shutdown, and serves their metrics
together.

Why not ``twisted.runner.procmon.ProcessMonitor``, Twisted's own process
supervisor?  It runs each process with a fixed command line under a name
and relays its output as text lines through its own ``LoggingProtocol``,
which cannot be replaced.  The workers need what it does not offer: a
``ProcessProtocol`` of their own that turns their JSON log records into
events with fields and consumes probe answers (:mod:`.process`), a stdin
to write probes and ``retire`` to, a command line that changes at each
start (each start gets a new metrics port), a second process on a seat
while the first drains (:mod:`.rolling`), a stop that tells a worker to
retire rather than SIGTERM it, and a ``stopService`` that waits for the
workers to drain (procmon's returns at once, before they have exited).
So the supervisor uses the machinery procmon itself is built on,
``reactor.spawnProcess`` and ``callLater``, with the same backoff idea.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..health import Ready
from ..settings import Settings
from .backoff import FIRST_RESTART_DELAY, MAX_RESTART_DELAY, STABLE_AFTER, Backoff
from .control import WorkerCommand, reactor_name
from .hangup import OnHangup
from .liveness import Liveness
from .metrics import Seat, free_loopback_port, merged_metrics_listener
from .ports import reserve
from .process import Phase, WorkerProcess, stop_all
from .rolling import RollingRestart

__all__ = ["FIRST_RESTART_DELAY", "MAX_RESTART_DELAY", "STABLE_AFTER", "WorkersService"]

_log = Logger(namespace="twisted_keepalive")

#: Seconds a worker told to stop or retire gets, beyond its own drain,
#: without progress before it is killed (see :mod:`.progress`).
_EXIT_GRACE = 5.0


class WorkersService(MultiService):
    """
    ``--workers N``: reserves the ports, runs N workers, replaces those that
    die or hang, rolls them over on SIGHUP, stops them all on shutdown, and
    serves their metrics together.

    :param settings: the validated settings (``settings.workers`` > 1).
    :param worker_argv: the ``wskeepalive`` options for every worker, without
        ``--listen``, ``--metrics`` and ``--workers`` (added here).
    :param reactor: the parent's reactor; the workers install the same one.
    :ivar workers: seat -> the worker holding it.
    """

    def __init__(self, settings: Settings, worker_argv: Sequence[str], reactor: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.settings = settings
        self.count = settings.workers
        self.stopping = False
        self.workers: dict[int, WorkerProcess] = {}
        self.restarts = dict.fromkeys(range(self.count), 0)
        self.hung = dict.fromkeys(range(self.count), 0)
        self._worker_argv = list(worker_argv)
        self._reactor = reactor
        self._reactor_name = reactor_name(reactor)
        self._reserved: list[socket.socket] = []
        self._listen: list[str] = []
        self._ports: list[int] = []
        #: Every worker process not yet ended: seat holders, new ones of a
        #: rolling restart, retiring ones.
        self._running: set[WorkerProcess] = set()
        self._backoff = Backoff(self.count)
        self._pending: dict[int, Any] = {}
        self._liveness = None
        if settings.worker_timeout is not None:
            self._liveness = Liveness(
                settings.worker_timeout, lambda: self._running, self._hung, reactor
            )
        self.rolling = RollingRestart(self, reactor)
        OnHangup(reactor, self.rolling.request).setServiceParent(self)  # type: ignore[no-untyped-call]
        #: What the parent's ``/readyz`` says: 503 from the moment it stops.
        self.ready = Ready()
        # Not a child: the metrics and probes stay up until every worker has
        # drained, so that a balancer sees 503, not a refused connection.
        self._metrics_listener = (
            None
            if settings.metrics is None
            else merged_metrics_listener(
                settings.metrics, self.seats, reactor, self.ready, access_log=settings.access_log
            )
        )

    def seats(self) -> list[Seat]:
        """Every seat's worker: number, pid, metrics port, restarts, running or not."""
        return [
            Seat(
                index,
                pid=worker.pid if worker else None,
                metrics_port=worker.metrics_port if worker else None,
                restarts=self.restarts[index],
                hung=self.hung[index],
            )
            for index, worker in ((i, self.workers.get(i)) for i in range(self.count))
        ]

    # -- life cycle

    def privilegedStartService(self) -> None:
        if self._metrics_listener is not None:
            self._metrics_listener.privilegedStartService()
        super().privilegedStartService()  # type: ignore[no-untyped-call]

    def startService(self) -> None:
        if self._metrics_listener is not None and not self._metrics_listener.running:
            self._metrics_listener.startService()
        self._reserved, addresses = reserve(self.settings.listen)
        self._listen = [address.description() for address in addresses]
        self._ports = [address.port for address in addresses]
        if self._reactor_name is None:
            _log.warn(
                "the workers run Twisted's default reactor: this one ({reactor}) is no "
                "reactor plugin, so they cannot install it by name",
                reactor=type(self._reactor).__module__,
                keepalive_event="workers_reactor_unknown",
            )
        _log.info(
            "starting {workers} workers on {listen} (reactor {reactor})",
            workers=self.count,
            listen=", ".join(self._listen),
            ports=self._ports,
            reactor=self._reactor_name,
            worker_timeout=self.settings.worker_timeout,
            keepalive_event="workers_start",
        )
        for index in range(self.count):
            self._spawn(index)
        if self._liveness is not None:
            self._liveness.start()
        super().startService()  # type: ignore[no-untyped-call]

    def start_candidate(self, index: int) -> WorkerProcess:
        """Start a worker for seat ``index``; it holds no seat until :meth:`seat`."""
        argv = list(self._worker_argv)
        for description in self._listen:
            argv += ["--listen", description]
        port = None
        if self.settings.metrics is not None:
            # A port free now; should another process take it first, the
            # worker fails to start and its replacement gets another.
            port = free_loopback_port()
            argv += ["--metrics", f"tcp:{port}:interface=127.0.0.1"]
        worker = WorkerProcess(index, port, self._worker_ended)
        self._running.add(worker)
        command = WorkerCommand(self._reactor_name, tuple(argv))
        try:
            self._reactor.spawnProcess(
                worker,
                command.argv()[0],
                command.argv(),
                env=dict(os.environ, TWISTED_KEEPALIVE_WORKER=str(index)),
                path=os.getcwd(),
                childFDs={0: "w", 1: "r", 2: "r"},
            )
        except OSError:
            # fork() failed (no memory, no process slots): an exit like any other.
            worker.processEnded(Failure())  # type: ignore[no-untyped-call]
        return worker

    def seat(self, worker: WorkerProcess) -> WorkerProcess | None:
        """Give ``worker`` its seat; the worker that held it, if that one still runs."""
        pending = self._pending.pop(worker.index, None)
        if pending is not None and pending.active():
            pending.cancel()
        previous = self.workers.get(worker.index)
        self.workers[worker.index] = worker
        return previous if previous is not None and not previous.ended.called else None

    def holder(self, index: int) -> WorkerProcess | None:
        """The worker holding seat ``index``, if any."""
        return self.workers.get(index)

    def retire_bound(self) -> float:
        """Seconds a retiring worker may go without progress before it is killed: its drain."""
        return self.settings.drain_spread + self.settings.close_timeout + _EXIT_GRACE

    def stop_bound(self) -> float:
        """Seconds a stopping worker may go without progress before it is killed: its drain."""
        return self.settings.drain_grace + self.retire_bound()

    def hurry(self) -> None:
        """A second stop signal: every worker still draining skips its grace and spread."""
        for worker in list(self._running):
            worker.hurry()

    def _spawn(self, index: int) -> None:
        self._pending.pop(index, None)
        worker = self.start_candidate(index)
        if worker.ended.called:  # it could not even be spawned
            self._replace(worker)
        else:
            self.seat(worker)

    def _hung(self, worker: WorkerProcess, silent: float) -> None:
        self.hung[worker.index] += 1
        _log.error(
            "worker {worker} (pid {worker_pid}) answered no probe for {silent:.1f} s "
            "(--worker-timeout {timeout:g}): its reactor is blocked or stopped; killing it",
            worker=worker.index,
            worker_pid=worker.pid,
            silent=silent,
            timeout=self.settings.worker_timeout,
            keepalive_event="worker_hung",
        )
        worker.kill_hung()

    def _worker_ended(self, worker: WorkerProcess, reason: Failure) -> None:
        self._running.discard(worker)
        status = worker.exit_status
        if self.workers.get(worker.index) is not worker:
            if worker.phase is Phase.RETIRING:
                log = _log.info if status == "exit status 0" else _log.warn
                log(
                    "worker {worker} (pid {worker_pid}) retired ({status})",
                    worker=worker.index,
                    worker_pid=worker.pid,
                    status=status,
                    keepalive_event="worker_retired",
                )
            # Otherwise a new worker of a rolling restart: the restart says why.
            return
        del self.workers[worker.index]
        if self.stopping:
            if status != "exit status 0":
                _log.warn(
                    "worker {worker} (pid {worker_pid}) stopped with {status}",
                    worker=worker.index,
                    worker_pid=worker.pid,
                    status=status,
                    keepalive_event="worker_stop",
                )
            return
        self._replace(worker)

    def _replace(self, worker: WorkerProcess) -> None:
        ran = time.monotonic() - worker.started_at
        delay = self._backoff.delay(worker.index, ran)
        self.restarts[worker.index] += 1
        how = "was killed for hanging" if worker.phase is Phase.KILLED else "exited unexpectedly"
        _log.error(
            "worker {worker} (pid {worker_pid}) {how} ({status}) after {ran:.1f} s; "
            "starting a replacement in {delay:.1f} s",
            worker=worker.index,
            worker_pid=worker.pid,
            status=worker.exit_status,
            how=how,
            ran=ran,
            delay=delay,
            keepalive_event="worker_crash",
        )
        self._pending[worker.index] = self._reactor.callLater(delay, self._spawn, worker.index)

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self.ready.stop("draining")
        self.stopping = True
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        if self._liveness is not None:
            self._liveness.stop()
        await super().stopService()  # type: ignore[no-untyped-call]
        await stop_all(list(self._running), self.stop_bound(), self._reactor)
        for sock in self._reserved:
            sock.close()
        self._reserved = []
        if self._metrics_listener is not None:
            await self._metrics_listener.stopService()
