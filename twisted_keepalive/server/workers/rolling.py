"""
SIGHUP with ``--workers N``: :class:`RollingRestart` replaces the workers
one seat at a time, so that the server accepts connections throughout and
the workers run the code installed now.

For each seat in turn: start a new worker, wait until it listens (at most
:data:`~.liveness.START_TIMEOUT`), then tell the old one to retire -- it
stops listening, closes its connections with 1001 and exits, without the
grace period a shutdown gives load balancers (the port never stopped
accepting) -- and wait until it has exited before the next seat, so that
only one worker's clients reconnect at a time.  The old worker is killed
only once it has gone its drain's length (``--drain-spread`` and
``--close-timeout``) and 5 s more without progress: without its count of
connections falling (:mod:`.progress`), so that a busy machine's slow drain
is not cut short and a hung worker does not hold the restart up.

A new worker that exits or does not listen in time stops the rolling
restart: the old worker keeps its seat and an error says why.  A SIGHUP
during a rolling restart queues one more pass, run once this one is done or
has stopped (several coalesce into one), so that every worker ends up
running the code that was there at the last SIGHUP.  SIGTERM stops it where it is: the
supervisor stops every process, new, old and retiring alike.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .liveness import START_TIMEOUT
from .process import WorkerProcess, fired_within, log_stalled
from .progress import ended_or_stalled

__all__ = ["RollingRestart", "Seats"]

_log = Logger(namespace="twisted_keepalive")


class Seats(Protocol):
    """What a rolling restart needs of the supervisor."""

    count: int
    stopping: bool

    def holder(self, index: int) -> WorkerProcess | None:
        """The worker now holding seat ``index``, if any."""

    def start_candidate(self, index: int) -> WorkerProcess:
        """Start a worker for seat ``index`` that does not hold it yet."""

    def seat(self, worker: WorkerProcess) -> WorkerProcess | None:
        """Give ``worker`` its seat; the worker that held it, if one still runs."""

    def retire_bound(self) -> float:
        """Seconds a worker told to retire may go without progress before it is killed."""


class RollingRestart:
    """Replace every worker, one seat at a time, on :meth:`request`."""

    def __init__(self, seats: Seats, reactor: Any) -> None:
        self._seats = seats
        self._reactor = reactor
        self._running = False
        self._queued = False

    def request(self) -> None:
        """SIGHUP: start a rolling restart, or queue one after the one running."""
        if self._seats.stopping:
            return
        if self._running:
            self._queued = True
            _log.info(
                "SIGHUP during a rolling restart: another will follow this one",
                keepalive_event="rolling_restart_queued",
            )
            return
        self._running = True
        done = Deferred.fromCoroutine(self._run())
        done.addErrback(lambda failure: _log.failure("rolling restart failed", failure))
        done.addBoth(lambda _: setattr(self, "_running", False))

    async def _run(self) -> None:
        while True:
            self._queued = False
            began = time.monotonic()
            _log.info(
                "rolling restart of {count} workers",
                count=self._seats.count,
                keepalive_event="rolling_restart_start",
            )
            completed = await self._pass(began)
            if self._seats.stopping:
                return
            if completed:
                _log.info(
                    "rolling restart done: {count} workers replaced",
                    count=self._seats.count,
                    keepalive_event="rolling_restart_done",
                )
            # A SIGHUP that came during a failed pass may follow a fixed deploy.
            if not self._queued:
                return

    async def _pass(self, began: float) -> bool:
        for index in range(self._seats.count):
            if not await self._replace(index, began) or self._seats.stopping:
                return False
        return True

    async def _replace(self, index: int, began: float) -> bool:
        """Replace seat ``index``'s worker; whether the rolling restart goes on."""
        old = self._seats.holder(index)
        if old is not None and old.started_at >= began:
            # Replaced since this pass began (it crashed): the code is new.
            return True
        new = self._seats.start_candidate(index)
        if not await self._listens(new):
            return False
        if self._seats.stopping:
            return False
        retiring = self._seats.seat(new)
        if retiring is None:
            return True
        _log.info(
            "worker {worker} (pid {worker_pid}) retires: pid {new_pid} holds its seat",
            worker=index,
            worker_pid=retiring.pid,
            new_pid=new.pid,
            keepalive_event="worker_retire",
        )
        retiring.retire()
        bound = self._seats.retire_bound()
        if not await ended_or_stalled(self._reactor, bound, retiring.progress, retiring.ended):
            log_stalled(retiring, bound, "retire", "worker_retire_kill")
            retiring.signal("KILL")
            await retiring.ended
        return True

    async def _listens(self, new: WorkerProcess) -> bool:
        """Whether ``new`` listens within the start timeout; if not, it is gone after."""
        await fired_within(self._reactor, START_TIMEOUT, new.listening, new.ended)
        if new.listening.called and not new.ended.called:
            return True
        if not new.ended.called:
            new.signal("KILL")
            why = f"it did not listen within {START_TIMEOUT:g} s"
        else:
            why = "it exited before it listened"
        await new.ended
        if self._seats.stopping:
            return False
        _log.error(
            "rolling restart stopped at worker {worker}: its new process (pid {new_pid}) "
            "failed to start ({why}, {status}); the old one keeps serving",
            worker=new.index,
            new_pid=new.pid,
            why=why,
            status=new.exit_status,
            keepalive_event="rolling_restart_failed",
        )
        return False
