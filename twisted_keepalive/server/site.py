"""
One ``twisted.web`` site per server: a request that asks to upgrade to a
WebSocket, on any path, goes to the Autobahn factory (Autobahn's
``WebSocketResource``); plain requests get the pages (:mod:`.pages`) and the
probes (:mod:`.health`); anything else is a 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any
from weakref import WeakSet

from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import Resource
from twisted.web.server import Request

from twisted_keepalive.serving import QuietSite

from .accepting import AcceptPacer

__all__ = [
    "CountedRequest",
    "NotFound",
    "ServerRoot",
    "ServerSite",
    "TakeoverResource",
    "handed_over",
    "wants_websocket",
]


def wants_websocket(request: Any) -> bool:
    """Whether ``request`` asks to upgrade to a WebSocket (RFC 6455 section 4.1)."""
    upgrade = request.getHeader(b"Upgrade")
    return upgrade is not None and b"websocket" in upgrade.lower()


class CountedRequest(Request):
    """
    A request its site counts while it is under way -- from its request line
    until it is answered, lost, or handed over to a WebSocket -- so that a
    drain can let the handshakes under way finish before it ends.
    """

    def __init__(
        self, channel: Any, *args: Any, accepted_as: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(channel, *args, **kwargs)  # type: ignore[no-untyped-call]
        # What the site's pacer knows this request's connection as.
        self._accepted_as = accepted_as
        self._counted_by = getattr(channel, "site", None)
        if isinstance(self._counted_by, ServerSite):
            self._counted_by.under_way.add(self)

    def stop_counting(self) -> None:
        """Not under way any more."""
        if isinstance(self._counted_by, ServerSite):
            self._counted_by.under_way.discard(self)
            if self._counted_by.pacer is not None and self._accepted_as is not None:
                self._counted_by.pacer.finished(self._accepted_as)
            self._counted_by = None

    def finish(self) -> Any:
        self.stop_counting()
        return super().finish()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Any) -> None:
        self.stop_counting()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


def handed_over(request: Any) -> None:
    """``request`` became a WebSocket: its site stops counting it."""
    if isinstance(request, CountedRequest):
        request.stop_counting()


class ServerSite(QuietSite):
    """
    The server's site: :class:`~twisted_keepalive.serving.QuietSite` that
    knows its requests under way (:attr:`under_way`), and tells its
    :attr:`pacer` (if any) when a connection is accepted and when its first
    request is over.
    """

    requestFactory = CountedRequest

    def __init__(self, *args: Any, pacer: AcceptPacer | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The requests whose answer or handover is still to come.
        self.under_way: WeakSet[CountedRequest] = WeakSet()
        #: Paces the accepts of the ports this site listens on.
        self.pacer = pacer

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if self.pacer is not None and channel is not None:
            self.pacer.accepted(channel)
            # The requests of the connection name it as the pacer knows it:
            # what buildProtocol returns wraps the channel they are given.
            channel.requestFactory = partial(self.requestFactory, accepted_as=channel)
        return channel


class TakeoverResource(WebSocketResource):
    """
    Autobahn's ``WebSocketResource``, which hands the TCP connection from
    ``twisted.web`` to a WebSocket protocol, and then lets go of the HTTP
    channel: otherwise it stays the transport's registered producer, holding
    its request (a few KiB) for the whole life of the WebSocket, and
    ``transport.registerProducer`` would fail for the application.
    """

    def render(self, request: Any) -> Any:
        transport = request.channel.transport
        rendered = super().render(request)  # type: ignore[no-untyped-call]
        if transport is not None and request.channel.transport is None:
            # Taken over: the WebSocket protocol owns the transport now.
            transport.unregisterProducer()
            handed_over(request)
        return rendered


class NotFound(Resource):
    """A plain-text 404 with its length (twisted.web's page streams HTML)."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        body = b"not found\n"
        if request.method == b"HEAD":
            request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
            return b""
        return body


class ServerRoot(Resource):
    """
    The root of the server's site.

    :param websocket: serves every WebSocket upgrade, whatever its path.
    :param children: plain resources by their one path segment (``b""`` for
        ``/``); nothing deeper is served.
    """

    def __init__(self, websocket: Any, children: Mapping[bytes, Any]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._websocket = websocket
        self._children = dict(children)
        self._missing = NotFound()  # type: ignore[no-untyped-call]

    def getChildWithDefault(self, path: bytes, request: Any) -> Any:
        if wants_websocket(request):
            return self._websocket
        child = self._children.get(path)
        if child is None or request.postpath:
            return self._missing
        return child

    def render(self, request: Any) -> Any:
        # Only for a request without a path at all (an absolute-form URI).
        return self.getChildWithDefault(b"", request).render(request)
