"""
One worker process as the parent sees it (:class:`WorkerProcess`): its log
records relayed into the parent's log, its end reported, signals sent to it.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

__all__ = ["WorkerProcess", "exit_status"]

_log = Logger(namespace="twisted_keepalive")

#: Starts each log record on a worker's stdout (as jsonFileLogObserver writes them).
_RECORD_SEPARATOR = b"\x1e"


class WorkerProcess(ProcessProtocol):
    """
    One worker process, its output turned into the parent's log events.

    :param index: the worker's number, 0 to N-1: a replacement takes the
        number of the worker it replaces.
    :param on_exit: called with this process and why it ended, before
        :attr:`ended` fires.
    """

    transport: Any

    def __init__(self, index: int, on_exit: Callable[[WorkerProcess, Failure], None]) -> None:
        self.index = index
        self.pid: int | None = None
        self.started_at = time.monotonic()
        self.ended: Deferred[None] = Deferred()
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
        self._on_exit(self, reason)
        self.ended.callback(None)

    def signal(self, name: str) -> None:
        """Send the signal ``name`` (``"TERM"``, ``"KILL"``) unless the process has exited."""
        with contextlib.suppress(error.ProcessExitedAlready):
            self.transport.signalProcess(name)


def exit_status(reason: Failure) -> str:
    """How a process ended, for a log line: ``exit status 0``, ``signal SIGKILL``."""
    value = reason.value
    signal_number = getattr(value, "signal", None)
    if signal_number is not None:
        return f"signal {signal.Signals(signal_number).name}"
    return f"exit status {getattr(value, 'exitCode', None)}"
