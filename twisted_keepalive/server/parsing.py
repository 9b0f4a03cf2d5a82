"""
Each option's text made into its value, or refused with a
``usage.UsageError``: twistd prints its message as one line and exits
non-zero, with no traceback.

What an option names is tried here, not at startup: the endpoints are built
(a typo, a missing key file) and the ``--protocol`` class is imported and
given the mixin.
"""

from __future__ import annotations

import math
import socket
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.util import parse_url
from twisted.python import usage
from twisted.python.reflect import namedAny

from twisted_keepalive import KeepaliveMixin
from twisted_keepalive.core.config import validate_seconds

from .endpoints import listen_description, metrics_endpoint
from .workers.ports import listen_problem

__all__ = [
    "checked",
    "choice",
    "external_url",
    "listen_description",
    "metrics_endpoint",
    "on_off",
    "seconds",
    "seconds_or_zero",
    "server_protocol",
    "whole_number",
    "worker_count",
    "worker_timeout",
]

# Typed names for the Twisted APIs that have no annotations, so that the rest
# of the module is checked by mypy --strict.
_named_any: Callable[[str], object] = namedAny


def seconds(option: str, text: str, *, allow_off: bool) -> float | None:
    if allow_off and text.strip().lower() == "off":
        return None
    value: object
    try:
        value = float(text)
    except ValueError:
        value = text  # for validate_seconds to name in its message
    try:
        return validate_seconds(f"--{option}", value, allow_none=False)
    except (TypeError, ValueError) as e:
        raise usage.UsageError(f"{e}{'; off disables it' if allow_off else ''}") from None


def positive_seconds(option: str, text: str) -> float:
    """Seconds, more than 0 (a timeout that cannot be turned off)."""
    checked = seconds(option, text, allow_off=False)
    assert checked is not None
    return checked


def seconds_or_zero(option: str, text: str) -> float:
    """Seconds, 0 included (a drain's grace or spread)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if value == 0:
        return 0.0
    try:
        checked = validate_seconds(f"--{option}", value, allow_none=False)
    except ValueError:
        raise usage.UsageError(
            f"--{option} must be a number of seconds, 0 or more, not {text!r}"
        ) from None
    assert checked is not None
    return checked


_Value = TypeVar("_Value")


def checked(check: Callable[[list[str]], _Value], values: list[str]) -> _Value:
    """``check(values)``, its ``ValueError`` made a usage error."""
    try:
        return check(values)
    except ValueError as e:
        raise usage.UsageError(str(e)) from None


def on_off(option: str, text: str) -> bool:
    switch = text.strip().lower()
    if switch not in ("on", "off"):
        raise usage.UsageError(f"--{option} must be on or off, not {text!r}")
    return switch == "on"


def choice(option: str, text: str, choices: tuple[str, ...]) -> str:
    chosen = text.strip().lower()
    if chosen not in choices:
        raise usage.UsageError(f"--{option} must be one of {', '.join(choices)}, not {text!r}")
    return chosen


def whole_number(option: str, text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        expected = "a positive whole number" if minimum > 0 else "a whole number, 0 or more"
        raise usage.UsageError(f"--{option} must be {expected}, not {text!r}")
    return value


def worker_count(text: str, listen: list[str]) -> int:
    count = whole_number("workers", text, minimum=1)
    if count == 1:
        return count
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise usage.UsageError(
            "--workers needs Linux, whose SO_REUSEPORT spreads connections over the workers"
        )
    for description in listen:
        problem = listen_problem(description)
        if problem is not None:
            raise usage.UsageError(problem)
    return count


#: Seconds: a shorter ``--worker-timeout`` would kill healthy workers whose
#: reactor is busy for a moment (a full garbage collection, a mass close).
_MIN_WORKER_TIMEOUT = 1.0


def worker_timeout(text: str) -> float | None:
    timeout = seconds("worker-timeout", text, allow_off=True)
    if timeout is not None and timeout < _MIN_WORKER_TIMEOUT:
        raise usage.UsageError(
            f"--worker-timeout must be at least {_MIN_WORKER_TIMEOUT:g} second, not {text!r}: "
            "a healthy reactor can be busy for most of a second; off disables it"
        )
    return timeout


def server_protocol(dotted: str) -> type[Any]:
    """The class ``dotted`` names, checked, with KeepaliveMixin added if it lacks it."""
    try:
        found = _named_any(dotted)
    except Exception as e:
        # Importing an operator's module can raise anything at all, and the
        # library refuses some protocol classes as they are created.
        raise usage.UsageError(
            f"--protocol {dotted!r} cannot be imported: {type(e).__name__}: {_one_line(e)}"
        ) from None
    if not (isinstance(found, type) and issubclass(found, WebSocketServerProtocol)):
        raise usage.UsageError(
            f"--protocol {dotted!r} must name a subclass of "
            f"autobahn.twisted.websocket.WebSocketServerProtocol, not {found!r}"
        )
    if _mixin_comes_late(found):
        raise usage.UsageError(
            f"--protocol {dotted!r} lists KeepaliveMixin after the Autobahn base class, so "
            "Autobahn's dispatchers would run instead of the mixin's: put KeepaliveMixin "
            f"first, before the Autobahn base: class {found.__name__}(KeepaliveMixin, "
            "WebSocketServerProtocol)"
        )
    if issubclass(found, KeepaliveMixin):
        return found
    try:
        return type(found.__name__, (KeepaliveMixin, found), {"__qualname__": found.__qualname__})
    except Exception as e:
        # A metaclass of the operator's that cannot go with the mixin's, say.
        raise usage.UsageError(
            f"--protocol {dotted!r} cannot be given KeepaliveMixin: "
            f"{type(e).__name__}: {_one_line(e)}"
        ) from None


def _mixin_comes_late(protocol: type[Any]) -> bool:
    # The library refuses such a class as it is created; this catches one
    # made without that check, which would serve with no keepalive at all.
    order = protocol.__mro__
    return KeepaliveMixin in order and order.index(KeepaliveMixin) > order.index(WebSocketProtocol)


def external_url(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        parse_url(url)
    except Exception as e:
        raise usage.UsageError(
            f"--external-url must be a ws:// or wss:// URL without a query, not {url!r} "
            f"({_one_line(e)})"
        ) from None
    return url


def _one_line(error: BaseException) -> str:
    # twistd prints the message after the usage hint: one line, whatever the
    # exception's text looked like.
    return " ".join(str(error).split())
