"""
How a keepalive timeout ends a connection on Autobahn: one warning with
every figure as a field, Close 1011 "keepalive ping timeout" through the
route Autobahn leaves open for it, and the abort that frees a dead peer's
connection.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from ..core.verdict import Timeout

_log = Logger(namespace="twisted_keepalive")

#: Close code and reason of a keepalive timeout, as in ``websockets``.
TIMEOUT_CLOSE_CODE = 1011
TIMEOUT_CLOSE_REASON = "keepalive ping timeout"


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
    _log.info(
        "keepalive: aborting the connection to {peer}: no closing handshake "
        "within {close_timeout} s",
        peer=protocol.peer,
        close_timeout=close_timeout,
        keepalive_event="abort",
    )
    transport = protocol.transport
    if hasattr(transport, "abortConnection"):
        transport.abortConnection()
    else:
        transport.loseConnection()


def log_timeout(peer: str, timeout: Timeout, close_timeout: float) -> None:
    """One warning per keepalive timeout, with every figure as a field."""
    _log.warn(
        "keepalive ping timeout: no pong from {peer} within {waited:.3f} s "
        "(cause {cause_name}; timer {lateness:.3f} s late; peer idle {idle:.3f} s; "
        "{queued} bytes queued outbound; last latency {latency:.3f} s); "
        "failing the connection with 1011",
        peer=peer,
        cause_name=timeout.cause.value,
        cause=timeout.cause,
        waited=timeout.waited,
        lateness=timeout.lateness,
        idle=timeout.idle,
        queued=timeout.queued,
        latency=timeout.latency,
        ping_interval=timeout.ping_interval,
        ping_timeout=timeout.ping_timeout,
        close_timeout=close_timeout,
        keepalive_event="timeout",
    )
