"""
``--framing twisted``: the operator's ``twisted.web.websocket`` protocol
served through :func:`~twisted_keepalive.web.with_keepalive`, its
connections tracked (:mod:`.tracking_web`), behind the one resource that
takes every WebSocket upgrade of the site.

Imported only for ``--framing twisted``: the Autobahn side runs on Twisted
releases without ``twisted.web.websocket``.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import NOT_DONE_YET
from twisted.web.websocket import WebSocketResource

from twisted_keepalive.web import KeepaliveFactory, with_keepalive

from .settings import Settings
from .site import handed_over
from .tracking_web import WebServerFactory

__all__ = ["TakeoverWebResource", "web_served"]


class TakeoverWebResource(WebSocketResource):
    """
    Twisted's ``WebSocketResource`` on every path, letting go of the HTTP
    channel once it handed the connection over: otherwise the channel stays
    the transport's registered producer, holding its request for the whole
    life of the WebSocket, and the application's ``attachProducer`` fails.
    """

    # Answer the upgrade whatever its path, not only the resource's own.
    isLeaf = True

    def render(self, request: Any) -> Any:
        transport = request.channel.transport
        rendered = super().render(request)  # type: ignore[no-untyped-call]
        if rendered is NOT_DONE_YET and transport is not None:
            # Upgraded: the WebSocket owns the transport now.
            transport.unregisterProducer()
            handed_over(request)
        return rendered


def web_served(
    settings: Settings, reactor: Any
) -> tuple[WebServerFactory, KeepaliveFactory, TakeoverWebResource]:
    """
    The tracker of the connections, the keepalive factory (the one
    :func:`~twisted_keepalive.collect_stats` counts) and the resource.
    """
    tracker = WebServerFactory(settings.protocol)
    tracker.log_connections = settings.connection_log
    keepalive: dict[str, Any] = settings.keepalive_given()
    factory = with_keepalive(tracker, reactor=reactor, **keepalive)
    # Twisted's factory type has buildProtocol return a protocol; ours may
    # return None, for a client factory that refused the connection.
    return tracker, factory, TakeoverWebResource(factory)  # type: ignore[arg-type]
