"""
An Autobahn echo server with keepalive: the smallest complete use of the mixin.

    python examples/echo_server.py [PORT]

Every connection is pinged every 20 s; a peer that does not answer within 20 s
is failed with 1011 "keepalive ping timeout". Each pong's latency is logged.
"""

from __future__ import annotations

import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from twisted_keepalive import KeepaliveMixin, set_keepalive_options

log = Logger()


class Echo(KeepaliveMixin, WebSocketServerProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)

    def onPong(self, payload: bytes) -> None:
        log.info("{peer}: round trip {latency:.1f} ms", peer=self.peer, latency=self.latency * 1000)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}")
    factory.protocol = Echo
    set_keepalive_options(factory, ping_interval=20.0, ping_timeout=20.0)
    reactor.listenTCP(port, factory, backlog=4096)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
