"""
One worker process as the parent sees it (:class:`WorkerProcess`): its log
records relayed into the parent's log, its answers to probes taken as signs
of life, the moment it listens, its drain's progress, its end, and what the
parent tells it (probes, ``retire``, signals).
"""

from __future__ import annotations

import contextlib
import enum
import signal
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

from .control import DRAIN_PROGRESS, HURRY, LISTENING, PROBE_REPLY, RETIRE, STOP, probe_line
from .progress import DrainProgress, ended_or_stalled

__all__ = ["Phase", "WorkerProcess", "exit_status", "fired_within", "log_stalled", "stop_all"]

_log = Logger(namespace="twisted_keepalive")

#: Starts each log record on a worker's stdout (as jsonFileLogObserver writes them).
_RECORD_SEPARATOR = b"\x1e"


class Phase(enum.Enum):
    """Where a worker is in its life, as the parent has arranged it."""

    STARTING = "starting"  # spawned, not listening yet
    SERVING = "serving"  # its ports listen
    RETIRING = "retiring"  # told to drain: another process holds its seat
    STOPPING = "stopping"  # sent SIGTERM with every other worker
    KILLED = "killed"  # sent SIGKILL for not answering probes

    @property
    def probed(self) -> bool:
        """Whether silence in this phase means the worker hangs."""
        # A retiring or stopping worker is bounded by the stop path's own
        # timer and killed there; probing it would only cut a drain short.
        return self in (Phase.STARTING, Phase.SERVING)


class WorkerProcess(ProcessProtocol):
    """
    One worker process, its output turned into the parent's log events.

    :param index: the worker's seat, 0 to N-1: a replacement takes the seat
        (and the ``worker`` label) of the worker it replaces.
    :param metrics_port: the loopback port it serves its own metrics on, or
        ``None``.
    :param on_exit: called with this process and why it ended, before
        :attr:`ended` fires.
    :ivar listening: fires once the worker logged that its ports listen.
    :ivar ended: fires once the process has exited.
    :ivar answered_at: ``time.monotonic()`` of its last answer to a probe
        (of its start, before the first).
    :ivar exit_status: how it ended (see :func:`exit_status`), once it has.
    :ivar progress: what it last said of its drain (:mod:`.progress`).
    """

    transport: Any

    def __init__(
        self,
        index: int,
        metrics_port: int | None,
        on_exit: Callable[[WorkerProcess, Failure], None],
    ) -> None:
        self.index = index
        self.metrics_port = metrics_port
        self.pid: int | None = None
        self.phase = Phase.STARTING
        self.started_at = self.answered_at = time.monotonic()
        self.listening: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.exit_status: str | None = None
        self.progress = DrainProgress()
        self._on_exit = on_exit
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

    # -- what the worker says

    def outReceived(self, data: bytes) -> None:
        # jsonFileLogObserver writes each record as RS, JSON, newline; JSON
        # escapes newlines, so a newline ends a record.
        *records, self._records = (self._records + data).split(b"\n")
        for record in records:
            record = record.strip(_RECORD_SEPARATOR + b" \r")
            if record:
                self._received(record)

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

    def _received(self, record: bytes) -> None:
        try:
            event = eventFromJSON(record.decode("utf-8", "replace"))
        except ValueError:
            return
        kind = event.get("keepalive_event")
        if kind == PROBE_REPLY:
            # A sign of life, not news for the log.  Replies still in the
            # pipe when the worker was killed for hanging change nothing.
            if self.phase is not Phase.KILLED:
                self.answered_at = time.monotonic()
            return
        self._relay(event)
        connections = event.get("connections")
        if kind == DRAIN_PROGRESS and isinstance(connections, int):
            self.progress.report(connections)
        if kind == LISTENING and not self.listening.called:
            if self.phase is Phase.STARTING:
                self.phase = Phase.SERVING
                self.answered_at = time.monotonic()
            self.listening.callback(None)

    def _relay(self, event: dict[str, Any]) -> None:
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
        self.exit_status = exit_status(reason)
        self._on_exit(self, reason)
        self.ended.callback(None)

    # -- what the parent tells it

    def probe(self, number: int) -> None:
        """Ask the worker's reactor for a sign of life."""
        self._write(probe_line(number))

    def retire(self) -> None:
        """Tell the worker to drain without grace and exit."""
        self.phase = Phase.RETIRING
        self._write(RETIRE + b"\n")

    def stop(self) -> None:
        """Tell the worker to drain as a single server does on SIGTERM, and exit."""
        if self.phase is not Phase.KILLED:
            self.phase = Phase.STOPPING
        # On stdin, not as SIGTERM: see control.py.
        self._write(STOP + b"\n")

    def hurry(self) -> None:
        """Tell a draining worker to skip the rest of its grace and spread."""
        self._write(HURRY + b"\n")

    def kill_hung(self) -> None:
        """SIGKILL, for not answering probes: its later answers are ignored."""
        self.phase = Phase.KILLED
        self.signal("KILL")

    def signal(self, name: str) -> None:
        """Send the signal ``name`` (``"TERM"``, ``"KILL"``) unless the process has exited."""
        with contextlib.suppress(error.ProcessExitedAlready):
            self.transport.signalProcess(name)

    def _write(self, line: bytes) -> None:
        # Lost, as Twisted's process transport documents, once the worker's
        # stdin is closed: a worker that has gone needs telling nothing.
        if not self.ended.called:
            self.transport.write(line)


def exit_status(reason: Failure) -> str:
    """How a process ended, for a log line: ``exit status 0``, ``signal SIGKILL``."""
    value = reason.value
    signal_number = getattr(value, "signal", None)
    if signal_number is not None:
        return f"signal {signal.Signals(signal_number).name}"
    if isinstance(value, error.ProcessDone | error.ProcessTerminated):
        return f"exit status {value.exitCode}"
    return f"not started: {type(value).__name__}: {value}"


def fired_within(clock: Any, seconds: float, *waited: Deferred[Any]) -> Deferred[bool]:
    """
    Fires with ``True`` as soon as one of ``waited`` fires, or with ``False``
    after ``seconds``.  Unlike ``addTimeout``, it never cancels them: others
    wait on :attr:`WorkerProcess.ended` too, and it must fire when the
    process really ends.
    """
    outcome: Deferred[bool] = Deferred()

    def settle(result: object, fired: bool) -> object:
        if not outcome.called:
            if timer.active():
                timer.cancel()
            outcome.callback(fired)
        return result

    timer = clock.callLater(seconds, settle, None, False)
    for deferred in waited:
        deferred.addBoth(settle, True)
    return outcome


async def stop_all(workers: list[WorkerProcess], bound: float, clock: Any) -> None:
    """
    Tell every one of ``workers`` to stop (each drains), and SIGKILL each
    one that goes ``bound`` seconds without progress in its drain (see
    :func:`~.progress.ended_or_stalled`); returns once all have exited.
    """
    _log.info("stopping {count} workers", count=len(workers), keepalive_event="workers_stop")
    for worker in workers:
        worker.stop()
    await defer.DeferredList(
        [Deferred.fromCoroutine(_stopped(worker, bound, clock)) for worker in workers]
    )


async def _stopped(worker: WorkerProcess, bound: float, clock: Any) -> None:
    if await ended_or_stalled(clock, bound, worker.progress, worker.ended):
        return
    log_stalled(worker, bound, "stop", "workers_kill")
    worker.signal("KILL")
    await worker.ended


def log_stalled(worker: WorkerProcess, bound: float, told: str, event: str) -> None:
    """Say why ``worker``, told to ``told`` (stop, retire), is killed: its drain stalled."""
    left = worker.progress.connections
    why = (
        f"it reported no progress in the {bound:g} s since it was told to {told}"
        if left is None
        else f"its drain made no progress for {bound:g} s ({left} connections left)"
    )
    _log.warn(
        "killing worker {worker} (pid {worker_pid}): {why}",
        worker=worker.index,
        worker_pid=worker.pid,
        why=why,
        seconds=bound,
        connections=left,
        keepalive_event=event,
    )
