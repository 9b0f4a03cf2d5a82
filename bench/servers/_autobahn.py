"""
The Twisted/Autobahn side shared by baseline, floor, limit, autobahn and ours:
the epoll reactor, a factory with Autobahn's defaults, a listener with a deep
backlog (TLS with ``--cert``/``--key``).
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
    scheme = "wss" if args.cert else "ws"
    made = WebSocketServerFactory(f"{scheme}://{args.host}:{args.port}", reactor=reactor)
    made.protocol = protocol
    made.open = set()
    return made


def serve(args, made: WebSocketServerFactory) -> None:
    if args.cert:
        # Twisted's TLS (a TLSMemoryBIOProtocol over the TCP transport), as
        # an ssl: endpoint of twistd wskeepalive has it.
        from twisted.internet import ssl

        with open(args.cert) as cert, open(args.key) as key:
            options = ssl.PrivateCertificate.loadPEM(cert.read() + key.read()).options()
        reactor.listenSSL(args.port, made, options, backlog=args.backlog, interface=args.host)
    else:
        reactor.listenTCP(args.port, made, backlog=args.backlog, interface=args.host)
    reactor.callWhenRunning(ready)
    reactor.run()
