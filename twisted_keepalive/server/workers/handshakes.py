"""
The opening handshakes under way in a worker (:func:`handshakes_under_way`),
so that a retiring worker can let them finish before it drains.

A WebSocket connection is an HTTP channel of the ``twisted.web`` site until
Autobahn's resource takes its transport over (``transport.protocol``
becomes the WebSocket protocol); the server's factory knows it only from
then on.  What the reactor reads from tells the rest: a TCP connection to
one of our ports whose protocol is not one of the factory's WebSockets is
still HTTP -- an upgrade under way, or a plain request (a health probe).
Only public routes: ``IReactorFDSet.getReaders()``, ``ITCPTransport``, and
the transport's ``protocol``, the attribute the takeover itself sets.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from twisted.internet.interfaces import ITCPTransport

__all__ = ["handshakes_under_way"]


def handshakes_under_way(reactor: Any, ports: Collection[int], websockets: Collection[Any]) -> int:
    """
    TCP connections to ``ports`` that the reactor reads from and that are not
    (yet) among ``websockets``.
    """
    count = 0
    for reader in reactor.getReaders():
        if not ITCPTransport.providedBy(reader):
            continue
        if reader.getHost().port in ports and getattr(reader, "protocol", None) not in websockets:
            count += 1
    return count
