"""
Validation of keepalive settings, shared by the mixin, the factory options and
the command line, so that a bad value is refused the same way wherever it
comes from: early, with the name of the setting in the message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Seconds between keepalive pings when nothing else is configured.  The same
#: as the ``websockets`` library: well under the 30-120 s after which proxies
#: and load balancers typically drop an idle connection.
DEFAULT_PING_INTERVAL = 20.0

#: Seconds to wait for the Pong before failing the connection.  Long enough
#: for a congested mobile link, short enough that a dead peer is noticed
#: within a minute with the default interval.
DEFAULT_PING_TIMEOUT = 20.0

#: Seconds to wait, after sending the 1011 Close frame of a keepalive timeout,
#: before the TCP connection is aborted.  A dead peer never answers the Close
#: and its socket may never drain, so the abort is what actually frees the
#: connection.  The same as ``websockets``' ``close_timeout``.
DEFAULT_CLOSE_TIMEOUT = 10.0

#: How much of the first interval the first Ping may be brought forward by,
#: as a fraction: 1.0 sends it at a uniformly random point of the first
#: ``ping_interval``.  Clients that reconnect together after a restart would
#: otherwise ping in lockstep forever (measured: peak/mean Pings per 500 ms
#: of 7.6 without, 1.1 with the whole interval).  Bringing a Ping *forward*
#: never delays a verdict.
DEFAULT_FIRST_PING_SPREAD = 1.0

#: Whether the protocol answers ``keepalive.js`` heartbeats (see
#: :mod:`twisted_keepalive.core.browser`).  Off by default in the library, so a
#: protocol never swallows messages it did not opt in to; on by default in
#: ``twistd wskeepalive``.
DEFAULT_BROWSER_HEARTBEAT = False

#: Seconds; the largest value any duration setting accepts (about 31 years).
#: Beyond it a deadline no longer fits the timer wheel's slot arithmetic, and
#: nobody means it: use ``None`` to switch a timer off.
MAX_SECONDS = 1e9

#: The settings a factory or an instance may override.
SETTING_NAMES = (
    "ping_interval",
    "ping_timeout",
    "close_timeout",
    "first_ping_spread",
    "browser_heartbeat",
)


def validate_seconds(name: str, value: object, *, allow_none: bool) -> float | None:
    """
    Check that ``value`` is a usable number of seconds for the setting ``name``.

    :return: ``value`` as a ``float``, or ``None`` when ``allow_none`` and it is
        ``None``.
    :raises TypeError: ``value`` is not a number (``bool`` is refused too: a
        ``True`` interval is always a mistake).
    :raises ValueError: ``value`` is zero, negative, NaN, infinite or above
        :data:`MAX_SECONDS`.
    """
    expected = "a positive number of seconds" + (" or None" if allow_none else "")
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be {expected}, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {expected}, not {type(value).__name__} {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} must be {expected}, not {value!r}")
    if seconds > MAX_SECONDS:
        off = "; None turns it off" if allow_none else ""
        raise ValueError(f"{name} must be at most {MAX_SECONDS:.0f} seconds{off}, not {value!r}")
    return seconds


def validate_setting(name: str, value: object) -> float | bool | None:
    """
    Validate one of :data:`SETTING_NAMES`: seconds (``None`` allowed but for
    ``close_timeout``), a fraction for ``first_ping_spread``, a ``bool`` for
    ``browser_heartbeat``.
    """
    if name not in SETTING_NAMES:
        raise TypeError(
            f"unknown keepalive setting {name!r}; expected one of {', '.join(SETTING_NAMES)}"
        )
    if name == "first_ping_spread":
        return validate_fraction(name, value)
    if name == "browser_heartbeat":
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, not {type(value).__name__} {value!r}")
        return value
    return validate_seconds(name, value, allow_none=name != "close_timeout")


def validate_fraction(name: str, value: object) -> float:
    """Check that ``value`` is a number from 0.0 to 1.0 for the setting ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = type(value).__name__
        raise TypeError(f"{name} must be a number from 0 to 1, not {kind} {value!r}")
    fraction = float(value)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{name} must be a number from 0 to 1, not {value!r}")
    return fraction


@dataclass(frozen=True, slots=True)
class KeepaliveConfig:
    """
    The settings in force on one connection, resolved once when it opens.

    :ivar ping_interval: seconds between keepalive pings; ``None`` disables
        keepalive and heartbeat.  Default 20.0.
    :ivar ping_timeout: seconds to wait for a Pong; ``None`` disables the
        heartbeat only.  Default 20.0.
    :ivar close_timeout: seconds between the 1011 Close frame and the abort.
        Default 10.0.
    :ivar first_ping_spread: fraction of the first interval by which the first
        Ping is brought forward at random (0.0: exactly one interval).
        Default 1.0.
    :ivar browser_heartbeat: answer ``keepalive.js`` heartbeat messages.
        Default False.
    """

    ping_interval: float | None = DEFAULT_PING_INTERVAL
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    first_ping_spread: float = DEFAULT_FIRST_PING_SPREAD
    browser_heartbeat: bool = DEFAULT_BROWSER_HEARTBEAT

    def __post_init__(self) -> None:
        for name in SETTING_NAMES:
            validate_setting(name, getattr(self, name))

    @property
    def detection_bound(self) -> float | None:
        """
        Seconds after the last sign of life within which a dead peer's
        connection is gone: ``ping_interval + ping_timeout + close_timeout``,
        or ``None`` when the heartbeat is off.
        """
        if self.ping_interval is None or self.ping_timeout is None:
            return None
        return self.ping_interval + self.ping_timeout + self.close_timeout
