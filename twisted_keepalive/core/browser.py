"""
The browser heartbeat's wire format, version 1.

Browsers answer WebSocket Pings but give pages no way to send one, so a page
cannot notice a dead server by itself.  ``static/keepalive.js`` sends an
application-level heartbeat instead, and a :class:`KeepaliveMixin` protocol
with ``browser_heartbeat = True`` answers it.

Format: a *text* message that is exactly ``"\\x00wsk1 ping " + token``, where
``token`` is 1 to 64 characters from ``[A-Za-z0-9_-]``, is answered at once
with the text message ``"\\x00wsk1 pong " + token``.  The leading NUL cannot
start JSON, XML or any printable text protocol, the ``wsk1`` tag names the
version, and the server only looks for it when the protocol opted in.  Such
messages never reach ``onMessage`` and count for nothing else (they are not
Pongs).  Text messages starting with ``"\\x00wsk"`` are reserved: those that
are not a well-formed version-1 ping are dropped.
"""

from __future__ import annotations

import re

#: What every heartbeat message starts with (any version).
RESERVED_PREFIX = b"\x00wsk"
PING_PREFIX = b"\x00wsk1 ping "
PONG_PREFIX = b"\x00wsk1 pong "
_TOKEN = re.compile(rb"[A-Za-z0-9_-]{1,64}\Z")


def heartbeat_reply(payload: bytes) -> bytes | None:
    """
    The reply to a reserved heartbeat message, or ``None`` if it is not a
    well-formed version-1 ping (then it is dropped, not answered).
    """
    if payload.startswith(PING_PREFIX):
        token = payload[len(PING_PREFIX) :]
        if _TOKEN.match(token):
            return PONG_PREFIX + token
    return None
