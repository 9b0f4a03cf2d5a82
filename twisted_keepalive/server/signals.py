"""
The stop signals, taken from twistd: SIGTERM or SIGINT starts a drain and
stops the reactor once it is done; a second one hurries the drain.

twistd's own handlers stop the reactor at once and make the process end
"killed by SIGTERM" (status 143) even after a clean drain; these let it
exit 0.  They are installed with the standard ``signal`` module once the
reactor runs (after it has installed its own), and hand the work to the
reactor thread with ``callFromThread``, as Twisted's own handlers do.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

__all__ = ["STOP_SIGNALS", "StopSignals"]

_log = Logger(namespace="twisted_keepalive")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals(Service):
    """
    While running, SIGTERM and SIGINT call ``drain`` and then stop the
    reactor; a signal during the drain calls ``hurry``.

    :param drain: starts the drain; fires when it is done.
    :param hurry: shortens a drain under way.
    """

    def __init__(
        self, reactor: Any, drain: Callable[[], Deferred[None]], hurry: Callable[[], None]
    ) -> None:
        self._reactor = reactor
        self._drain = drain
        self._hurry = hurry
        self._draining = False

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._reactor.callWhenRunning(self._install)

    def _install(self) -> None:
        for number in STOP_SIGNALS:
            signal.signal(number, self._received)

    def _received(self, number: int, frame: object) -> None:
        # In a signal handler: only hand the work over to the reactor.
        self._reactor.callFromThread(self._on_signal, signal.Signals(number).name)

    def _on_signal(self, name: str) -> None:
        if self._draining:
            _log.info(
                "{signal} during the drain: skipping the rest of the grace and spread",
                signal=name,
                keepalive_event="drain_hurry",
            )
            self._hurry()
            return
        self._draining = True
        _log.info("{signal}: draining, then stopping", signal=name, keepalive_event="signal")
        self._drain().addBoth(lambda _: self._stop())

    def _stop(self) -> None:
        if self._reactor.running:
            self._reactor.stop()
