"""
The exceptions of twisted-keepalive, in one hierarchy.
"""

from __future__ import annotations

__all__ = ["ConnectionClosed", "KeepaliveError", "PingInFlight"]


class KeepaliveError(Exception):
    """The base of every exception twisted-keepalive raises on its own account."""


class PingInFlight(KeepaliveError, ValueError):
    """A Ping with the same payload is already waiting for its Pong."""


class ConnectionClosed(KeepaliveError):
    """
    The connection went away (or was never open) while a :meth:`ping
    <twisted_keepalive.autobahn.mixin.KeepaliveMixin.ping>` waited for its Pong.

    :ivar code: the WebSocket close code where known (1011 after a keepalive
        timeout, 1006 for a connection lost without a closing handshake),
        else ``None``.
    :ivar reason: a human-readable reason.
    """

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        if self.code is None:
            return self.reason
        return f"{self.reason} (close code {self.code})"
