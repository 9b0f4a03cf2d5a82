"""
The Twisted/Autobahn side shared by baseline, floor, limit, autobahn and ours:
the epoll reactor, a factory with Autobahn's defaults, a listener with a deep
backlog.
"""

from __future__ import annotations

from twisted.internet import epollreactor

epollreactor.install()

from _common import ready  # noqa: E402
from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import reactor  # noqa: E402

__all__ = [
    "Registry",
    "WebSocketServerFactory",
    "WebSocketServerProtocol",
    "factory",
    "reactor",
    "serve",
]


class Registry(WebSocketServerProtocol):
    """
    An Autobahn server protocol that keeps itself in ``factory.open`` while
    open, for servers that drive every connection from one loop.
    """

    def onOpen(self) -> None:
        self.factory.open.add(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.open.discard(self)


def factory(args, protocol: type[WebSocketServerProtocol]) -> WebSocketServerFactory:
    made = WebSocketServerFactory(f"ws://{args.host}:{args.port}", reactor=reactor)
    made.protocol = protocol
    made.open = set()
    return made


def serve(args, made: WebSocketServerFactory) -> None:
    reactor.listenTCP(args.port, made, backlog=args.backlog, interface=args.host)
    reactor.callWhenRunning(ready)
    reactor.run()
