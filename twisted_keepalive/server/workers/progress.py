"""
A draining worker's progress, so that the parent kills a worker that has
stopped draining, not one that is busy draining.

A drain's length depends on the machine: on two idle cores a worker closes
its connections in the ``--drain-spread`` it was given, but on two cores busy
with the Pings of 100,000 connections the workers closed only 3,000-4,300 a
second between them, and a parent that killed every worker a fixed time
after telling it to stop cut their drains short (1006 for tens of thousands
of clients).  So:

- the worker, while it drains, logs every :data:`PROGRESS_INTERVAL` seconds
  the connections it has left (:class:`DrainReporter`, an info event with
  ``keepalive_event="drain_progress"`` and ``connections``);
- the parent reads them (:class:`DrainProgress`, one per worker), and
  :func:`ended_or_stalled` gives a worker told to stop or retire ``bound``
  seconds from then, and ``bound`` seconds again each time its count falls.

A worker whose reactor is blocked reports nothing, one stuck some other way
reports the same count: either is killed ``bound`` seconds after it last
made progress.  There is no ceiling on the whole wait: the worker's own
timers end its drain (the spread, then ``--close-timeout``, then the
aborts), each step of which makes the count fall, so a longer wait is only
ever a machine too busy to close faster, and any fixed ceiling would cut
that drain short again at a larger scale.  An operator in a hurry sends a
second stop signal (the workers skip the rest of their grace and spread),
and whatever stops the service (systemd's ``TimeoutStopSec``) still has the
last word.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .control import DRAIN_PROGRESS

__all__ = ["PROGRESS_INTERVAL", "DrainProgress", "DrainReporter", "ended_or_stalled"]

_log = Logger(namespace="twisted_keepalive")

#: Seconds between a draining worker's reports.
PROGRESS_INTERVAL = 1.0


class DrainReporter:
    """
    In a worker: from :meth:`start` to :meth:`stop`, log the connections it
    has left every ``interval`` seconds -- one cheap info event, whatever
    ``--connection-log`` says (it is no per-connection line).  A worker with
    no connection left says nothing more: nothing is draining.

    :param connections: the number of connections the worker has now.
    :param clock: what schedules the reports (the reactor, or a ``task.Clock``).
    :param interval: seconds between reports; default :data:`PROGRESS_INTERVAL`.
    :param log: where the reports go; by default the package's logger (in a
        worker, its stdout: the parent reads them there).
    """

    def __init__(
        self,
        connections: Callable[[], int],
        clock: Any,
        interval: float = PROGRESS_INTERVAL,
        log: Logger = _log,
    ) -> None:
        self._connections = connections
        self._interval = interval
        self._log = log
        self._loop = LoopingCall(self._report)
        self._loop.clock = clock
        self._last: int | None = None

    def start(self) -> None:
        """Report now and every interval from now on (once: later calls change nothing)."""
        if not self._loop.running:
            self._loop.start(self._interval, now=True)

    def stop(self) -> None:
        """Report no more."""
        if self._loop.running:
            self._loop.stop()

    def _report(self) -> None:
        count = self._connections()
        if count == 0 and not self._last:
            return
        self._last = count
        self._log.info(
            "draining: {connections} connections left",
            connections=count,
            keepalive_event=DRAIN_PROGRESS,
        )


class DrainProgress:
    """
    In the parent: what one worker last said of its drain.

    :ivar connections: the connections it had at its last report, or
        ``None`` before its first.
    """

    def __init__(self) -> None:
        self.connections: int | None = None
        self._watchers: list[Callable[[], None]] = []

    def report(self, connections: int) -> None:
        """A report came: if the count fell since the last one, that is progress."""
        fell = self.connections is not None and connections < self.connections
        self.connections = connections
        if fell:
            for watcher in list(self._watchers):
                watcher()

    def watch(self, watcher: Callable[[], None]) -> None:
        """Call ``watcher`` at each progress from now on."""
        self._watchers.append(watcher)

    def unwatch(self, watcher: Callable[[], None]) -> None:
        """No more calls to ``watcher``."""
        self._watchers.remove(watcher)


def ended_or_stalled(
    clock: Any, bound: float, progress: DrainProgress, ended: Deferred[Any]
) -> Deferred[bool]:
    """
    Fires with ``True`` as soon as ``ended`` fires, or with ``False`` once
    ``bound`` seconds have passed without progress: since the call, or since
    the last fall in the count ``progress`` saw after it.  Like
    :func:`~.process.fired_within`, it never cancels ``ended``.
    """
    outcome: Deferred[bool] = Deferred()

    def settle(fired: bool) -> None:
        if not outcome.called:
            if timer.active():
                timer.cancel()
            progress.unwatch(progressed)
            outcome.callback(fired)

    def progressed() -> None:
        timer.reset(bound)

    def on_end(result: object) -> object:
        settle(True)
        return result

    timer = clock.callLater(bound, settle, False)
    progress.watch(progressed)
    ended.addBoth(on_end)
    return outcome
