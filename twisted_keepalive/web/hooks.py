"""
What the adapter needs of ``twisted.web.websocket`` beyond its documented
API, each in one small function here, each with a test in
``tests/unit/test_web_hooks.py`` that fails when Twisted changes under it.

- :func:`tcp_transport_of`: the TCP (or TLS) transport under the WebSocket
  transport, to abort a peer that never takes our Close, to read how much of
  ours is still queued, and to write the keepalive Ping.  Twisted's wire
  protocol keeps it as its public ``transport`` attribute, but the
  WebSocket transport's type does not promise one.
- :func:`observe_inbound`: the peer's raw bytes as they arrive, to tell a
  peer in the middle of a frame from a silent one.  Twisted delivers only
  whole messages; the bytes are seen by wrapping the ``dataReceived`` that
  Twisted calls: the HTTP channel's on the server side (Twisted's upgrade
  points it at the wire protocol), the wire protocol's own on the client.
- :func:`send_close`: a Close frame with a reason (1011 "keepalive ping
  timeout", 1001 "going away").  Twisted's wire protocol takes
  ``loseConnection(code, reason)``, but the ``WebSocketTransport`` type it
  documents declares ``loseConnection(code)`` only.

What to propose upstream: a public ``abortConnection()``, a frame-level
"bytes received" hook (or a ``lastReceived`` time and an ``inFrame`` flag) and
a ``reason`` in the declared ``loseConnection`` on the WebSocket transport
would make all three unnecessary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The first Twisted release with ``twisted.web.websocket``.
TWISTED_WITH_WEBSOCKET = "25.5"


def twisted_version() -> str:
    """The installed Twisted's version, for error messages."""
    from importlib import metadata

    try:
        return metadata.version("twisted")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed oddly
        return "unknown"


def require_twisted_websocket() -> None:
    """
    Check that ``twisted.web.websocket`` can be imported.

    :raises ImportError: it cannot; the message names the Twisted version
        installed, the one needed and the extra to install.
    """
    try:
        import twisted.web.websocket  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"twisted_keepalive.web needs twisted.web.websocket (Twisted "
            f"{TWISTED_WITH_WEBSOCKET} or later, with wsproto), but it cannot be imported "
            f"with Twisted {twisted_version()} ({e}); install it with "
            "pip install 'twisted-keepalive[web]'. The Autobahn adapter "
            "(from twisted_keepalive import KeepaliveMixin) works without it."
        ) from e


def tcp_transport_of(websocket_transport: Any) -> Any:
    """
    The byte-stream transport under Twisted's WebSocket transport.

    :raises TypeError: it has none (not Twisted's wire protocol).
    """
    transport = getattr(websocket_transport, "transport", None)
    if transport is None or not hasattr(transport, "write"):
        raise TypeError(
            f"{websocket_transport!r} is not a twisted.web.websocket transport with a "
            "byte-stream transport under it"
        )
    return transport


def inbound_holder(websocket_transport: Any, request: Any) -> Any:
    """
    The object whose ``dataReceived`` Twisted calls with the peer's bytes:
    the HTTP channel of a server-side ``request`` (Twisted's upgrade pointed
    its ``dataReceived`` at the wire protocol's), else the wire protocol.
    ``None`` when neither holds the wire protocol's ``dataReceived``.
    """
    deliver = getattr(websocket_transport, "dataReceived", None)
    holder = websocket_transport if request is None else getattr(request, "channel", None)
    if deliver is None or holder is None or getattr(holder, "dataReceived", None) != deliver:
        return None
    return holder


def observe_inbound(holder: Any, observer: Callable[[bytes], object]) -> None:
    """Call ``observer(data)`` with the peer's bytes just before Twisted reads them."""
    holder.dataReceived = _Observed(observer, holder.dataReceived)


class _Observed:
    """
    ``observer(data)``, then Twisted's own ``deliver(data)``: an object of two
    fields rather than a closure, which costs every connection ~150 B more.
    """

    __slots__ = ("deliver", "observer")

    def __init__(self, observer: Callable[[bytes], object], deliver: Callable[[bytes], object]):
        self.observer = observer
        self.deliver = deliver

    def __call__(self, data: bytes) -> None:
        self.observer(data)
        self.deliver(data)


def send_close(websocket_transport: Any, code: int, reason: str) -> None:
    """
    Send a Close frame with ``code`` and ``reason`` through Twisted's
    WebSocket transport, which then closes the TCP connection.

    :raises wsproto.utilities.LocalProtocolError: a Close went out already.
    """
    websocket_transport.loseConnection(code, reason)
