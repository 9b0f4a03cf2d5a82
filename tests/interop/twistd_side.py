"""
Code that runs inside the ``twistd wskeepalive`` under test (imported there by
dotted name, with the checkout on ``PYTHONPATH``): a log observer for
``twistd --logger`` and protocols for ``--protocol``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.logger import LogEvent, jsonFileLogObserver, textFileLogObserver

from twisted_keepalive import KeepaliveMixin
from twisted_keepalive.server.echo_web import EchoProtocol

#: The environment variable naming the file that gets the server's log events.
LOG_PATH_VARIABLE = "WSKEEPALIVE_TEST_LOG"


def log_observer() -> Callable[[LogEvent], None]:
    """
    For ``twistd --logger``: every event as JSON into the file named by
    ``$WSKEEPALIVE_TEST_LOG``, for tests to assert on its fields, and as text
    on stdout, for a human reading a failure.
    """
    as_json = jsonFileLogObserver(open(os.environ[LOG_PATH_VARIABLE], "a", encoding="utf-8"))  # noqa: SIM115 -- open for the life of the process
    as_text = textFileLogObserver(sys.stdout)

    def observe(event: LogEvent) -> None:
        as_json(event)
        as_text(event)

    return observe


class Shout(WebSocketServerProtocol):
    """
    An operator's protocol as they are usually written: no KeepaliveMixin,
    ``onOpen`` without ``super()``.  Answers every text message in capitals,
    and ``"url?"`` with the factory's URL.
    """

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if payload == b"url?":
            self.sendMessage(str(self.factory.url).encode())  # type: ignore[no-untyped-call]
        else:
            self.sendMessage(payload.upper(), isBinary)  # type: ignore[no-untyped-call]


class WebShout(EchoProtocol):
    """
    An operator's ``twisted.web.websocket`` protocol: answers every text
    message in capitals, and ``"latency?"`` with the keepalive transport's
    ``latency``.
    """

    def textMessageReceived(self, message: str) -> None:
        if message == "latency?":
            self.transport.sendTextMessage(str(self.transport.latency))
        else:
            self.transport.sendTextMessage(message.upper())


class QuickPings(KeepaliveMixin, WebSocketServerProtocol):  # type: ignore[misc]
    """A keepalive protocol with its own interval, for when the command line gives none."""

    ping_interval = 0.25
    first_ping_spread = 0.0
