"""
:class:`WorkersService`, the parent of ``--workers N``: reserves the ports,
runs N workers, replaces those that die, stops them all on shutdown, and
serves their metrics together.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..settings import Settings
from .metrics import Seat, free_loopback_port, merged_metrics_listener
from .ports import Address
from .process import WorkerProcess, exit_status

__all__ = ["WORKER_MODULE", "WorkersService"]

_log = Logger(namespace="twisted_keepalive")

#: What each worker runs, as ``python -m WORKER_MODULE '["--listen", ...]'``.
WORKER_MODULE = "twisted_keepalive.server.worker_main"

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


class WorkersService(MultiService):
    """
    ``--workers N``: reserves the ports, runs N workers, replaces those that
    die, stops them all on shutdown, and serves their metrics together.

    :param settings: the validated settings (``settings.workers`` > 1).
    :param worker_argv: the ``wskeepalive`` options for every worker, without
        ``--listen``, ``--metrics`` and ``--workers`` (added here).
    :param reactor: the parent's reactor.
    """

    def __init__(self, settings: Settings, worker_argv: Sequence[str], reactor: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.settings = settings
        self._worker_argv = list(worker_argv)
        self._reactor = reactor
        self._reserved: list[socket.socket] = []
        self._listen: list[str] = []
        #: Worker -> the loopback port its own metrics are served on.
        self._metrics_ports: dict[int, int] = {}
        self.workers: dict[int, WorkerProcess] = {}
        self.restarts = dict.fromkeys(range(settings.workers), 0)
        self._failures_in_a_row = dict.fromkeys(range(settings.workers), 0)
        self._pending: dict[int, Any] = {}
        self._stopping = False
        if settings.metrics is not None:
            listener = merged_metrics_listener(settings.metrics, self.seats, reactor)
            listener.setServiceParent(self)  # type: ignore[no-untyped-call]

    def seats(self) -> list[Seat]:
        """Every worker's number, pid, metrics port and restarts, running or not."""
        return [self._seat(index) for index in range(self.settings.workers)]

    def _seat(self, index: int) -> Seat:
        worker = self.workers.get(index)
        if worker is None:
            return Seat(index, pid=None, metrics_port=None, restarts=self.restarts[index])
        port = self._metrics_ports.get(index)
        return Seat(index, pid=worker.pid, metrics_port=port, restarts=self.restarts[index])

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
            address = Address.parse(self._reactor, description)
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
            port = self._metrics_ports[index] = free_loopback_port()
            argv += ["--metrics", f"tcp:{port}:interface=127.0.0.1"]
        worker = WorkerProcess(index, self._worker_ended)
        self.workers[index] = worker
        self._reactor.spawnProcess(
            worker,
            sys.executable,
            [sys.executable, "-m", WORKER_MODULE, json.dumps(argv)],
            env=dict(os.environ, TWISTED_KEEPALIVE_WORKER=str(index)),
            path=os.getcwd(),
            childFDs={0: "w", 1: "r", 2: "r"},
        )

    def _worker_ended(self, worker: WorkerProcess, reason: Failure) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        status = exit_status(reason)
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
            worker.signal("TERM")
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
                worker.signal("KILL")
            await defer.DeferredList([w.ended for w in left])
        for sock in self._reserved:
            sock.close()
        self._reserved = []
