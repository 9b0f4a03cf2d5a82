"""
WebSocket keepalive and heartbeat for Twisted, on Autobahn's framing.

Mix :class:`KeepaliveMixin` into an Autobahn ``WebSocketServerProtocol`` or
``WebSocketClientProtocol``: it pings the peer every ``ping_interval`` seconds,
fails the connection with 1011 "keepalive ping timeout" when no Pong comes
back within ``ping_timeout`` seconds, measures ``latency`` and offers
``ping()``.  :class:`ReconnectingClient` keeps such a client connected.
"""

from .autobahn import KeepaliveMixin, set_keepalive_options
from .core.config import KeepaliveConfig
from .core.errors import ConnectionClosed, KeepaliveError, PingInFlight
from .core.stats import LATENCY_BUCKETS, KeepaliveStats, ReactorLag, collect_stats
from .core.verdict import Cause, Timeout
from .reconnecting import FullJitterBackoff, ReconnectingClient

__all__ = [
    "LATENCY_BUCKETS",
    "Cause",
    "ConnectionClosed",
    "FullJitterBackoff",
    "KeepaliveConfig",
    "KeepaliveError",
    "KeepaliveMixin",
    "KeepaliveStats",
    "PingInFlight",
    "ReactorLag",
    "ReconnectingClient",
    "Timeout",
    "collect_stats",
    "set_keepalive_options",
]

#: The release, as `PEP 440 <https://peps.python.org/pep-0440/>`_ spells it: the
#: one place it is written (``pyproject.toml`` reads it from here).
__version__ = "0.1.0"
