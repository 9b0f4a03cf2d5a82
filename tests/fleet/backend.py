"""
Runs inside each backend ``twistd wskeepalive`` of the fleet suite (imported
by ``--protocol tests.fleet.backend.IdentifiedEcho``, with the checkout on
``PYTHONPATH``).
"""

from __future__ import annotations

import json
import os

from twisted_keepalive.server.echo import EchoProtocol

__all__ = ["IdentifiedEcho"]


class IdentifiedEcho(EchoProtocol):
    """
    The default echo protocol, whose first message tells the client which
    backend served it: ``{"backend": <the port it listens on>, "pid": <the
    process>}``.  A browser cannot read the handshake's response headers, so a
    message is the one signal every client (Node, Chromium, Python) can read;
    the pid tells the workers of a ``--workers`` backend apart.
    """

    def onOpen(self) -> None:
        identity = {"backend": self.transport.getHost().port, "pid": os.getpid()}
        self.sendMessage(json.dumps(identity).encode("utf-8"))
