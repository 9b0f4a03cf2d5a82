"""
One ``twisted.web`` site per server: a request that asks to upgrade to a
WebSocket, on any path, goes to the Autobahn factory (Autobahn's
``WebSocketResource``); plain requests get the pages (:mod:`.pages`) and the
probes (:mod:`.health`); anything else is a 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import Resource

__all__ = ["NotFound", "ServerRoot", "TakeoverResource", "wants_websocket"]


def wants_websocket(request: Any) -> bool:
    """Whether ``request`` asks to upgrade to a WebSocket (RFC 6455 section 4.1)."""
    upgrade = request.getHeader(b"Upgrade")
    return upgrade is not None and b"websocket" in upgrade.lower()


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
