"""
Autobahn pretty-prints a debug line on every connection, debug or not.

Its ``WebSocketProtocol._connectionMade`` builds a list of every protocol
option with its value and source, passes it through ``pprint.pformat`` and
hands the result to a ``log.debug`` that, at the default level, drops it.
Through ``twistd wskeepalive``'s site that formatting is 40 to 50 % of the
CPU of an opening handshake (``bench/handshake_cost.py``: 540-570 µs with
it, 290-330 µs without, three rounds) -- the largest single cost a
reconnect storm pays per client.  The server owns its process, so it gives
Autobahn's protocol module ``repr`` instead: the same facts on one line, for
debug lines nobody reads by default.  The library itself changes nothing in
Autobahn: only the server calls :func:`plain_debug_formatting`.

Upstream, the fix is to format lazily (pass the list, let the observer
format it) or to test the log level first; that is the report to make.
"""

from __future__ import annotations

import autobahn.websocket.protocol as _autobahn_protocol

__all__ = ["plain_debug_formatting"]


def plain_debug_formatting() -> bool:
    """
    Make Autobahn's per-connection debug formatting cheap (``repr`` for
    ``pprint.pformat`` in ``autobahn.websocket.protocol``); whether it could.

    No public setting exists for this: the module's ``pformat`` name is the
    narrowest route, and ``tests/unit/test_autobahn_debug.py`` fails if it
    goes.
    """
    if not callable(getattr(_autobahn_protocol, "pformat", None)):
        return False
    setattr(_autobahn_protocol, "pformat", _one_line)  # noqa: B010  # not an export of it
    return True


def _one_line(value: object, *args: object, **kwargs: object) -> str:
    # pformat's signature, repr's cost.
    return repr(value)
