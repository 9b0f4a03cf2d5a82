"""
Keepalive and heartbeat for Twisted's own WebSocket API,
``twisted.web.websocket`` (Twisted 25.5 and later, with wsproto: the ``web``
extra), driven by the same core as the Autobahn adapter.

:func:`with_keepalive` wraps a server or client factory in a
:class:`KeepaliveFactory`; its :class:`KeepaliveProtocol` takes Twisted's
events and hands them on, :class:`KeepaliveTransport` is what the
application's protocol gets as its transport (``latency``, ``ping()``),
:mod:`twisted_keepalive.web.link` carries out the core's decisions for one
connection, :mod:`twisted_keepalive.web.frames` follows the peer's frame
boundaries, :mod:`twisted_keepalive.web.hooks` holds what is reached beyond
Twisted's documented API.

``import twisted_keepalive`` never imports this package: the Autobahn side
works on Twisted releases without ``twisted.web.websocket``.
"""

from .hooks import require_twisted_websocket

require_twisted_websocket()

from .factory import KeepaliveFactory, with_keepalive  # noqa: E402
from .protocol import KeepaliveProtocol  # noqa: E402
from .transport import KeepaliveTransport  # noqa: E402

__all__ = ["KeepaliveFactory", "KeepaliveProtocol", "KeepaliveTransport", "with_keepalive"]
