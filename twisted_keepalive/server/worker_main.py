"""
One worker of ``--workers N``, as the parent runs it:
``python -m twisted_keepalive.server.worker_main COMMAND`` (see
:mod:`.workers.control`; not for running by hand).  It installs the
parent's reactor, builds the same server as a single process, listening with
``SO_REUSEPORT``, logs to stdout as JSON records for the parent to pass on,
and answers the parent's probes and its ``retire`` on stdin; while it
drains, it reports the connections it has left every second
(:mod:`.workers.progress`), so that the parent does not kill it mid-drain.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, cast

from twisted.application.reactors import NoSuchReactor, installReactor
from twisted.internet import stdio
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger, globalLogBeginner, jsonFileLogObserver
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python import usage
from twisted.python.failure import Failure

from .options import Options
from .service import build_service
from .shutdown import WebSocketService
from .workers.control import (
    HURRY,
    LISTENING,
    PROBE_REPLY,
    RETIRE,
    STOP,
    reactor_name,
    read_command,
    read_probe,
)
from .workers.ports import Address, ReusePortEndpoint
from .workers.progress import DrainReporter

__all__ = ["main"]

_log = Logger(namespace="twisted_keepalive")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker until SIGTERM, SIGINT, ``retire`` or the parent's end; the exit status."""
    try:
        command = read_command(list(sys.argv[1:] if argv is None else argv))
        if command.reactor is not None:
            # Before anything imports twisted.internet.reactor, which would
            # install the default one.
            installReactor(command.reactor)
        options = Options()
        options.shares_ports = True
        options.parseOptions(list(command.options))
    except (usage.UsageError, ValueError, NoSuchReactor) as e:
        print(f"twisted_keepalive.server.worker_main: {e}", file=sys.stderr)
        return 2
    from twisted.internet import reactor

    observer: Any = jsonFileLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    settings = options.settings
    addresses = {d: Address.parse(d) for d in settings.listen}
    service = build_service(
        settings,
        reactor,
        endpoint=lambda d: cast(IStreamServerEndpoint, ReusePortEndpoint(reactor, addresses[d])),
    )
    return _Worker(reactor, service).run()


class _Worker:
    """The worker's life: start, answer the parent, and stop exactly once."""

    def __init__(self, reactor: Any, service: WebSocketService) -> None:
        self._reactor = reactor
        self._service = service
        self._failed = False
        self._stopping: Deferred[None] | None = None
        self._reactor_stopped = False
        self._signals = 0
        self._progress = DrainReporter(lambda: len(service.factory.connections), reactor)

    def run(self) -> int:
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signal_number, self._on_signal)
        # The parent's SIGHUP means a rolling restart, which the parent runs;
        # a hangup of the terminal the parent was started from reaches the
        # workers too and must not kill them.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self._reactor.addSystemEventTrigger("before", "shutdown", self._shut_down)
        self._reactor.callWhenRunning(self._start)
        self._reactor.run(installSignalHandlers=False)
        return 1 if self._failed else 0

    def _on_signal(self, signal_number: int, frame: Any) -> None:
        self._reactor.callFromThread(self._signalled, signal.Signals(signal_number).name)

    def _signalled(self, name: str) -> None:
        # As for one server: the first stops gracefully (or lets a retire
        # under way finish), the next ones hurry the drain.  The parent's
        # "stop" is not counted: the same signal often reached both.
        self._signals += 1
        if self._signals == 1:
            self.stop()
        else:
            self.hurry(name)

    def hurry(self, why: str) -> None:
        """Skip what is left of the grace and spread of the drain."""
        _log.info(
            "{signal} during the drain: skipping the rest of the grace and spread",
            signal=why,
            keepalive_event="drain_hurry",
        )
        self._service.hurry()

    def _start(self) -> None:
        try:
            self._service.startService()  # type: ignore[no-untyped-call]
        except Exception:
            self._failed = True
            _log.failure("worker could not start")
            self.stop()
            return
        # The endpoints listen synchronously: from here the kernel may hand
        # this worker connections.
        _log.info(
            "worker listening (reactor {reactor})",
            reactor=reactor_name(self._reactor),
            keepalive_event=LISTENING,
        )
        standard_io: Any = stdio.StandardIO
        standard_io(_Parent(self), stdin=0, stdout=_devnull(), reactor=self._reactor)

    def retire(self) -> None:
        """Drain without the grace period, then exit: other workers serve the port already."""
        if self._stopping is not None:
            return
        _log.info("retiring: draining without grace", keepalive_event="worker_retiring")
        retired = Deferred.fromCoroutine(self._retire())
        self._draining(retired)
        retired.addErrback(lambda failure: _log.failure("retiring failed", failure))
        retired.addBoth(lambda _: self.stop())

    async def _retire(self) -> None:
        # The drain stops listening, lets the handshakes under way finish and
        # sends its 1001s, while the other workers serve the port.
        await self._service.drain(grace=False)
        await self._service.stopService()

    def _shut_down(self) -> Deferred[None] | None:
        # The reactor waits for what this returns before it stops: a retire
        # under way goes on to its end (SIGTERM does not cut it short).
        if self._stopping is None and self._service.running:
            self._draining(self._service.stopService())
        return self._stopping

    def _draining(self, stopping: Deferred[None]) -> None:
        # Reports from now until the drain is done (or failed).
        self._stopping = stopping
        self._progress.start()
        stopping.addBoth(self._drained)

    def _drained(self, result: object) -> object:
        self._progress.stop()
        return result

    def stop(self) -> None:
        """Stop the reactor (once): the shutdown trigger stops the service."""
        if not self._reactor_stopped and self._reactor.running:
            self._reactor_stopped = True
            self._reactor.stop()


class _Parent(LineOnlyReceiver):
    """The parent's end of our stdin: probes, ``retire``, and its going away."""

    delimiter = b"\n"

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker

    def lineReceived(self, line: bytes) -> None:
        probe = read_probe(line)
        if probe is not None:
            # Answered from the reactor: if it is blocked, no answer comes.
            _log.debug("probe {probe} answered", probe=probe, keepalive_event=PROBE_REPLY)
        elif line.strip() == RETIRE:
            self._worker.retire()
        elif line.strip() == STOP:
            self._worker.stop()
        elif line.strip() == HURRY:
            self._worker.hurry("the parent's second stop signal")

    def connectionLost(self, reason: Failure | None = None) -> None:
        # The parent holds our stdin: it closes when the parent goes away.
        self._worker.stop()


def _devnull() -> int:
    # StandardIO wants a writable descriptor; ours (stdout) carries the log.
    return os.open(os.devnull, os.O_WRONLY)


if __name__ == "__main__":
    sys.exit(main())
