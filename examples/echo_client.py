"""
An Autobahn client with keepalive that measures its round trip with ping().

    python examples/echo_client.py ws://127.0.0.1:8080
"""

from __future__ import annotations

import sys

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import reactor
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure

from twisted_keepalive import ConnectionClosed, KeepaliveMixin

log = Logger()


class Client(KeepaliveMixin, WebSocketClientProtocol):
    ping_interval = 5.0
    ping_timeout = 5.0

    def onOpen(self) -> None:
        self.ping().addCallbacks(self.measured, self.failed)

    def measured(self, latency: float) -> None:
        log.info("round trip {latency:.2f} ms", latency=latency * 1000)

    def failed(self, failure: Failure) -> None:
        failure.trap(ConnectionClosed)
        log.warn("no pong: {why}", why=failure.value)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        log.info("closed: {code} {reason}", code=code, reason=reason)
        if reactor.running:  # type: ignore[attr-defined]
            reactor.stop()  # type: ignore[attr-defined]


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080"
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    factory = WebSocketClientFactory(url)
    factory.protocol = Client
    connectWS(factory)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
