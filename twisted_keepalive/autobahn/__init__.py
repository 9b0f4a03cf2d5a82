"""
The adapter for Autobahn's Twisted WebSocket protocols: :mod:`mixin` takes
Autobahn's events, :mod:`link` carries out the core's decisions for one
connection, :mod:`factory` keeps what a factory shares, :mod:`settings`
checks settings when assigned, :mod:`hooks` checks the Autobahn internals
it stands on, :mod:`transport` probes Twisted's write buffer.
"""

from .factory import set_keepalive_options
from .mixin import KeepaliveMixin

__all__ = ["KeepaliveMixin", "set_keepalive_options"]
