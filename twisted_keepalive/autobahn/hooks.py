"""
The Autobahn internals the adapter stands on, checked once.

The mixin hooks Autobahn's internal dispatchers rather than the public
``onOpen`` / ``onPong`` / ``onClose``, because most Autobahn protocols
override those without calling ``super()``: a mixin relying on them would
silently do nothing.  The price is a dependence on names Autobahn does not
promise to keep, so they are checked at import (one clear error naming the
Autobahn version instead of a connection that quietly runs without
keepalive), and a class whose bases would let Autobahn's versions win is
refused when it is created.
"""

from __future__ import annotations

from autobahn.websocket.protocol import WebSocketProtocol

#: Autobahn's dispatchers that :class:`twisted_keepalive.autobahn.mixin.KeepaliveMixin`
#: wraps: every event the keepalive needs passes through one of them.
HOOKED_METHODS = (
    "dataReceived",
    "_onOpen",
    "_dataReceived",
    "_onMessage",
    "_onPing",
    "_onPong",
    "_onClose",
    "_connectionLost",
)

#: Other Autobahn protocol attributes the adapter uses: 1011 goes out through
#: ``sendCloseFrame`` (public ``sendClose`` refuses it), the closing-handshake
#: timer is replaced by ours, ``current_frame`` tells a peer mid-frame.
USED_ATTRIBUTES = ("sendCloseFrame", "sendPing", "sendMessage", "STATE_OPEN")


def autobahn_version() -> str:
    """The installed Autobahn's version, for error messages."""
    from importlib import metadata

    try:
        return metadata.version("autobahn")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed oddly
        return "unknown"


def missing_autobahn_names(*protocols: type) -> list[str]:
    """The hooked methods and used attributes that any of ``protocols`` lacks."""
    missing = []
    for protocol in protocols:
        for name in HOOKED_METHODS + USED_ATTRIBUTES:
            if not hasattr(protocol, name) and name not in missing:
                missing.append(name)
    return missing


def require_autobahn_hooks(*protocols: type) -> None:
    """
    Check Autobahn's Twisted server and client protocols (or ``protocols``).

    :raises ImportError: a method or attribute the adapter needs is missing;
        the message names them and the Autobahn version.
    """
    if not protocols:
        from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol

        protocols = (WebSocketServerProtocol, WebSocketClientProtocol)
    missing = missing_autobahn_names(*protocols)
    if missing:
        raise ImportError(
            f"twisted-keepalive cannot work with autobahn {autobahn_version()}: its "
            f"WebSocket protocols lack {', '.join(missing)}; install an autobahn "
            "release this version of twisted-keepalive supports (see its README)"
        )


def misplaced_base(cls: type, mixin: type) -> type | None:
    """
    The first Autobahn class that comes before ``mixin`` in ``cls``'s method
    resolution order and defines a hooked method, or ``None`` if the mixin's
    hooks win.  ``class Chat(WebSocketServerProtocol, KeepaliveMixin)`` is
    the usual way to get this wrong.
    """
    for klass in cls.__mro__:
        if klass is mixin:
            return None
        if issubclass(klass, mixin):
            continue
        if issubclass(klass, WebSocketProtocol) and any(
            name in vars(klass) for name in HOOKED_METHODS
        ):
            return klass
    return None
