"""
Is each worker's reactor still turning?  :class:`Liveness` writes a probe
to every starting or serving worker's stdin every :func:`probe_interval`
seconds; the worker's reactor answers on stdout (:mod:`.control`).  A worker
that has answered nothing for ``--worker-timeout`` seconds is reported hung,
and the supervisor kills and replaces it.

The probe goes through the worker's reactor on purpose: a process that is
alive but whose reactor is blocked (a handler that never returns, a
deadlock, SIGSTOP) accepts no connections and pings no clients, and only a
reactor turn can answer.

Like the keepalive of a connection, it never blames a worker for the
parent's own stall: a probe round that runs late (the parent's reactor was
blocked, or the parent was stopped) judges nobody, because the answers that
came meanwhile are still unread -- Twisted runs due timers before it reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.task import LoopingCall

from .process import Phase, WorkerProcess

__all__ = ["START_TIMEOUT", "Liveness", "probe_interval"]

#: Seconds a worker may take from its spawn to listening before it counts as
#: hung (or, in a rolling restart, as failed to start): imports and start-up
#: take a second or two, many more on a loaded machine, never a minute.
START_TIMEOUT = 60.0

#: The longest wait between probes, in seconds.
_MAX_PROBE_INTERVAL = 5.0


def probe_interval(timeout: float) -> float:
    """
    Seconds between probes for ``timeout``: a third of it, so that a healthy
    worker's silence never comes near the timeout, and at most 5 s; a hung
    worker is found within ``timeout`` plus one interval.
    """
    return min(timeout / 3, _MAX_PROBE_INTERVAL)


class Liveness:
    """
    Probe the workers and report those that stopped answering.

    :param timeout: seconds of silence after which a worker is hung.
    :param workers: the worker processes now running.
    :param on_hung: called with a hung worker and the seconds it was silent.
    :param clock: what schedules the probes (the reactor, or a ``task.Clock``).
    :param now: the time in seconds; a monotonic clock, so that setting the
        system's time does not make every worker look hung.
    """

    def __init__(
        self,
        timeout: float,
        workers: Callable[[], Iterable[WorkerProcess]],
        on_hung: Callable[[WorkerProcess, float], None],
        clock: Any,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.interval = probe_interval(timeout)
        self._workers = workers
        self._on_hung = on_hung
        self._now = now
        self._loop = LoopingCall(self._round)
        self._loop.clock = clock
        self._probes = 0
        self._last_round: float | None = None

    def start(self) -> None:
        """Probe from now on, every :attr:`interval` seconds."""
        self._last_round = None
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        """Probe no more."""
        if self._loop.running:
            self._loop.stop()

    def _round(self) -> None:
        now = self._now()
        late = self._last_round is not None and now - self._last_round > 2 * self.interval
        self._last_round = now
        self._probes += 1
        for worker in list(self._workers()):
            if not worker.phase.probed:
                continue
            silent = now - worker.answered_at
            if not late and silent > self._allowed(worker):
                self._on_hung(worker, silent)
            else:
                worker.probe(self._probes)

    def _allowed(self, worker: WorkerProcess) -> float:
        # A worker reads its stdin once it listens: before that, silence is
        # start-up, bounded apart.
        if worker.phase is Phase.STARTING:
            return max(self.timeout, START_TIMEOUT)
        return self.timeout
