"""
``--framing autobahn|twisted``: which WebSocket implementation serves, and
what ``--protocol`` must name on each.  Checked while the options are
parsed, so that a protocol of the other API, or an option the framing
cannot honour, is one usage line rather than a server that misbehaves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from twisted.python import usage
from twisted.python.reflect import namedAny

from . import parsing

__all__ = ["AUTOBAHN", "FRAMINGS", "TWISTED", "chosen", "refuse_autobahn_only", "served_protocol"]

AUTOBAHN = "autobahn"
TWISTED = "twisted"
FRAMINGS = (AUTOBAHN, TWISTED)

#: The ``--protocol`` each framing serves when none is given.
DEFAULT_PROTOCOLS: Mapping[str, str] = MappingProxyType(
    {
        AUTOBAHN: "twisted_keepalive.server.echo.EchoProtocol",
        TWISTED: "twisted_keepalive.server.echo_web.EchoProtocol",
    }
)

#: What the served ``--framing twisted`` protocol class must have: the
#: factory calls ``buildProtocol(request)`` (a class method, as in Twisted's
#: own examples), the keepalive hands on every ``WebSocketProtocol`` event.
WEB_PROTOCOL_METHODS = (
    "buildProtocol",
    "negotiationStarted",
    "negotiationFinished",
    "textMessageReceived",
    "bytesMessageReceived",
    "pongReceived",
    "connectionLost",
)

#: The options ``--framing twisted`` refuses, and why: neither
#: ``twisted.web.websocket`` nor wsproto offers a public way to honour them.
AUTOBAHN_ONLY: Mapping[str, str] = MappingProxyType(
    {
        "allowed-origin": "Twisted's WebSocketResource checks no Origin",
        "max-message-size": "wsproto and Twisted reassemble messages of any size",
        "external-url": "Twisted's factories have no URL to give the protocol",
    }
)

_named_any: Callable[[str], object] = namedAny


def chosen(text: str) -> str:
    """The framing ``--framing`` names, once it proved usable here."""
    framing = parsing.choice("framing", text, FRAMINGS)
    if framing == TWISTED:
        try:
            import twisted_keepalive.web  # noqa: F401
        except ImportError:
            # Not twisted_keepalive.web.hooks' constant: importing that
            # package is what just failed.
            raise usage.UsageError(
                "--framing twisted needs twisted.web.websocket (Twisted 25.5 or later, "
                "with wsproto): pip install 'twisted-keepalive[web]'"
            ) from None
    return framing


def refuse_autobahn_only(framing: str, options: Mapping[str, Any]) -> None:
    """
    Refuse an Autobahn-only option given with ``--framing twisted``;
    ``options`` by their command-line names, ``None`` (or no value of a
    repeatable one) where not given.
    """
    if framing != TWISTED:
        return
    for option, why in AUTOBAHN_ONLY.items():
        if options[option] not in (None, []):
            raise usage.UsageError(
                f"--{option} is not available with --framing twisted ({why}); "
                "use --framing autobahn"
            )


def served_protocol(framing: str, dotted: str | None) -> type[Any]:
    """The ``--protocol`` class for ``framing``, checked (the framing's echo if ``None``)."""
    name = dotted if dotted is not None else DEFAULT_PROTOCOLS[framing]
    if framing == AUTOBAHN:
        try:
            return parsing.server_protocol(name)
        except usage.UsageError as e:
            if not _is_web_protocol(name):
                raise
            # The likeliest slip with two framings: say which one serves it.
            raise usage.UsageError(
                f"{e}: a twisted.web.websocket protocol is served with --framing twisted"
            ) from None
    return _web_protocol(name)


def _is_web_protocol(dotted: str) -> bool:
    try:
        found = _named_any(dotted)
    except Exception:
        # Refused as it was imported: parsing.server_protocol said why.
        return False
    return isinstance(found, type) and all(
        callable(getattr(found, m, None)) for m in WEB_PROTOCOL_METHODS
    )


def _web_protocol(dotted: str) -> type[Any]:
    try:
        found = _named_any(dotted)
    except Exception as e:
        # Importing an operator's module can raise anything at all.
        message = " ".join(str(e).split())
        raise usage.UsageError(
            f"--protocol {dotted!r} cannot be imported: {type(e).__name__}: {message}"
        ) from None
    missing = [m for m in WEB_PROTOCOL_METHODS if not callable(getattr(found, m, None))]
    if not isinstance(found, type) or missing:
        lacks = f"; it lacks {', '.join(missing)}" if isinstance(found, type) else ""
        raise usage.UsageError(
            f"--protocol {dotted!r} must name a twisted.web.websocket protocol class with "
            f"a buildProtocol(request) class method, not {found!r}{lacks} "
            "(an Autobahn protocol is served with --framing autobahn)"
        )
    return found
