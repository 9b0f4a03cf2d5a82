"""
SIGHUP under ``twistd wskeepalive``: :class:`OnHangup` runs a function on
the reactor when the process gets SIGHUP -- with ``--workers N`` a rolling
restart (:mod:`.rolling`), with one process a log line saying that a
rolling restart needs ``--workers``.  Either way SIGHUP no longer kills the
server, as its default action would.

Twisted's reactor handles SIGINT, SIGTERM and SIGCHLD and offers no public
way to add a signal; the handler below only hands the work to the reactor
thread with ``callFromThread``, which is safe from a signal handler.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

__all__ = ["OnHangup", "single_process_hangup"]

_log = Logger(namespace="twisted_keepalive")


class OnHangup(Service):
    """While running, SIGHUP calls ``action`` on the reactor thread."""

    def __init__(self, reactor: Any, action: Callable[[], None]) -> None:
        self._reactor = reactor
        self._action = action

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        signal.signal(signal.SIGHUP, self._on_signal)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        # Still ours to ignore while the workers drain: the default would kill.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _on_signal(self, signal_number: int, frame: Any) -> None:
        self._reactor.callFromThread(self._action)


def single_process_hangup() -> None:
    """What SIGHUP does without ``--workers``: nothing, said in the log."""
    _log.warn(
        "SIGHUP ignored: a rolling restart needs --workers 2 or more; "
        "this server runs in one process (restart it to load new code)",
        keepalive_event="rolling_restart_unavailable",
    )
