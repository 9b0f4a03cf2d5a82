"""
How a keepalive timeout ends an Autobahn connection: Close 1011 "keepalive
ping timeout" through the route Autobahn leaves open for it.  The warning and
the abort are the same for every framing
(:mod:`twisted_keepalive.glue.closing`).
"""

from __future__ import annotations

from typing import Any

from ..glue.closing import TIMEOUT_CLOSE_CODE, TIMEOUT_CLOSE_REASON, abort_transport, log_timeout

__all__ = [
    "TIMEOUT_CLOSE_CODE",
    "TIMEOUT_CLOSE_REASON",
    "abort",
    "log_timeout",
    "send_timeout_close",
]


def send_timeout_close(protocol: Any) -> None:
    """Send Close 1011 and make ``close_timeout`` the closing handshake's bound."""
    # What Autobahn hands onClose if the connection ends without the peer's
    # Close: 1006 'connection was closed uncleanly ("keepalive ping timeout")'.
    protocol.wasClean = False
    protocol.wasNotCleanReason = TIMEOUT_CLOSE_REASON
    if protocol.state != protocol.STATE_OPEN:
        return
    # Autobahn's public sendClose() refuses 1011 and its _fail_connection()
    # drops TCP without a Close frame (failByDrop); sendCloseFrame() sends
    # 1011 and starts the closing handshake.
    protocol.sendCloseFrame(
        code=TIMEOUT_CLOSE_CODE, reasonUtf8=TIMEOUT_CLOSE_REASON.encode(), isReply=False
    )
    # Autobahn starts its own closing-handshake timer too, on txaio's batched
    # timer, which truncates deadlines to whole seconds: it would cut a slow
    # peer off anywhere from 0 to 1 s in, whatever close_timeout says.
    autobahn_timer = getattr(protocol, "closeHandshakeTimeoutCall", None)
    if autobahn_timer is not None:
        autobahn_timer.cancel()
        protocol.closeHandshakeTimeoutCall = None


def abort(protocol: Any, close_timeout: float | None) -> None:
    """Drop the TCP connection of a peer that did not finish the closing handshake."""
    abort_transport(protocol.transport, protocol.peer, close_timeout)
