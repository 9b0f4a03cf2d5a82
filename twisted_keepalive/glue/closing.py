"""
How a keepalive timeout ends a connection, whatever the framing: one warning
with every figure as a field, the close code and reason both framings send,
and the abort that frees a dead peer's connection.  The Close frame itself
goes out through each framing's own route (``autobahn/closing.py``,
``web/link.py``).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from ..core.verdict import Timeout

_log = Logger(namespace="twisted_keepalive")

#: Close code and reason of a keepalive timeout, as in ``websockets``.
TIMEOUT_CLOSE_CODE = 1011
TIMEOUT_CLOSE_REASON = "keepalive ping timeout"


def abort_transport(transport: Any, peer: str, close_timeout: float | None) -> None:
    """Drop the TCP connection of a peer that did not finish the closing handshake."""
    _log.info(
        "keepalive: aborting the connection to {peer}: no closing handshake "
        "within {close_timeout} s",
        peer=peer,
        close_timeout=close_timeout,
        keepalive_event="abort",
    )
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
