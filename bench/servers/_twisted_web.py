"""
The Twisted side for servers on Twisted's own WebSocket API
(``twisted.web.websocket``): the epoll reactor, a ``Site`` whose root is a
``WebSocketResource`` leaf, a listener with a deep backlog.
"""

from __future__ import annotations

from twisted.internet import epollreactor

epollreactor.install()

from typing import Any  # noqa: E402

from _common import ready, skip  # noqa: E402
from twisted.internet import reactor  # noqa: E402

try:
    from twisted.web.server import Site
    from twisted.web.websocket import WebSocketResource
except ImportError as e:  # pragma: no cover - Twisted without websocket
    skip(f"twisted.web.websocket is not available: {e}")

__all__ = ["Registry", "RegistryFactory", "reactor", "serve"]


class Registry:
    """
    A plain twisted.web.websocket protocol that keeps itself in ``open``
    while open (Twisted's wire protocol, a dataclass, is unhashable).
    """

    def __init__(self, open_transports: set[Any]) -> None:
        self.open = open_transports
        self.transport: Any = None

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        self.open.add(self)

    def textMessageReceived(self, message: str) -> None:
        pass

    def bytesMessageReceived(self, data: bytes) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        self.open.discard(self)


class RegistryFactory:
    def __init__(self) -> None:
        self.open: set[Any] = set()

    def buildProtocol(self, addr: Any) -> Registry:
        return Registry(self.open)


def serve(args: Any, factory: Any) -> None:
    resource = WebSocketResource(factory)
    resource.isLeaf = True
    site = Site(resource, timeout=None)
    reactor.listenTCP(args.port, site, backlog=args.backlog, interface=args.host)
    reactor.callWhenRunning(ready)
    reactor.run()
