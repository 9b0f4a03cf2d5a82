"""
One worker of ``--workers N``, as the parent runs it:
``python -m twisted_keepalive.server.worker_main '["--listen", ...]'`` (the
``wskeepalive`` options as a JSON list; not for running by hand).  It builds
the same server as a single process, listening with ``SO_REUSEPORT``, and
logs to stdout as JSON records for the parent to pass on.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, cast

from twisted.internet import stdio
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger, globalLogBeginner, jsonFileLogObserver
from twisted.python import usage
from twisted.python.failure import Failure

from .options import Options
from .service import build_service
from .workers.ports import Address, ReusePortEndpoint

__all__ = ["main"]

_log = Logger(namespace="twisted_keepalive")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker until SIGTERM, SIGINT or the parent's end; the exit status."""
    # Not at the top: importing it installs the default reactor.
    from twisted.internet import reactor

    arguments = list(sys.argv[1:] if argv is None else argv)
    observer: Any = jsonFileLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    options = Options()
    try:
        options.parseOptions(json.loads(arguments[0]))
    except (usage.UsageError, IndexError, ValueError) as e:
        print(f"twisted_keepalive.server.worker_main: {e}", file=sys.stderr)
        return 2
    settings = options.settings
    addresses = {d: Address.parse(d) for d in settings.listen}
    service = build_service(
        settings,
        reactor,
        endpoint=lambda d: cast(IStreamServerEndpoint, ReusePortEndpoint(reactor, addresses[d])),
    )
    return _run(reactor, service)


def _run(reactor: Any, service: Any) -> int:
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
