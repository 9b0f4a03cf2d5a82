"""
Application Pings, whatever the framing: the payload checked at once, and a
``Deferred`` that the core's ledger settles with the round trip (or fails
with :class:`ConnectionClosed <twisted_keepalive.ConnectionClosed>`).
"""

from __future__ import annotations

import functools
from typing import Any

from twisted.internet.defer import Deferred

from .link import KeepaliveLink

#: RFC 6455 5.5: a control frame's payload is at most this many bytes.
MAX_PING_PAYLOAD = 125


def ping_payload(data: object) -> bytes | None:
    """
    ``data`` as a Ping payload: ``bytes`` as is, ``str`` UTF-8 encoded,
    ``None`` for "pick one".

    :raises TypeError: ``data`` is not ``bytes``, ``str`` or ``None``.
    :raises ValueError: ``data`` is longer than 125 bytes.
    """
    if data is None:
        return None
    if isinstance(data, bytes):
        payload = data
    elif isinstance(data, str):
        payload = data.encode("utf-8")
    else:
        raise TypeError(f"ping data must be bytes, str or None, not {type(data).__name__}")
    if len(payload) > MAX_PING_PAYLOAD:
        raise ValueError(
            f"ping data must be at most {MAX_PING_PAYLOAD} bytes (RFC 6455 control frame), "
            f"not {len(payload)}"
        )
    return payload


def send_application_ping(
    link: KeepaliveLink, payload: bytes | None, *, sent: bool = False
) -> Deferred[float]:
    """
    Send an application Ping on an open connection and wait for its Pong.

    :param payload: from :func:`ping_payload`; ``None`` picks a fresh random
        one that no Ping in flight uses.
    :param sent: the caller has just written it (in this reactor turn, so no
        Pong can have come back yet).
    :raises PingInFlight: a Ping with ``payload`` is already waiting.
    """
    heartbeat = link.heartbeat
    if payload is None:
        payload = heartbeat.new_payload()
    waiter: Deferred[float] = Deferred(functools.partial(_forget_ping, heartbeat.forget, payload))
    heartbeat.ping_sent(payload, link.now(), waiter)
    if not sent:
        link.send_ping(payload)
    stats = link.stats
    if stats is not None:
        stats.pings_sent += 1
    return waiter


def _forget_ping(forget: Any, payload: bytes, waiter: Deferred[float]) -> None:
    # A cancelled ping() stops waiting for its Pong.
    forget(payload, waiter)
