"""The default ``--protocol``: an echo server with keepalive."""

from __future__ import annotations

from autobahn.twisted.websocket import WebSocketServerProtocol

from twisted_keepalive import KeepaliveMixin

__all__ = ["EchoProtocol"]


class EchoProtocol(KeepaliveMixin, WebSocketServerProtocol):  # type: ignore[misc]
    """The default protocol: sends every text or binary message back as it came."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # A message can cross our Close (the 1001 of a shutdown, a 1011):
        # Autobahn still delivers it, but refuses to send once the closing
        # handshake has begun, and the peer expects no answer by then.
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self.sendMessage(payload, isBinary)
