"""
``twistd wskeepalive``: a WebSocket server with keepalive.

Only the plugin object lives here; ``ServiceMaker`` imports
:mod:`twisted_keepalive.server.twistd` when twistd asks for the options, so
that scanning plugins stays cheap and never fails on this package's imports.
"""

from twisted.application.service import ServiceMaker

wskeepalive = ServiceMaker(
    "twisted-keepalive WebSocket server",
    "twisted_keepalive.server.twistd",
    "A WebSocket server that pings its clients and drops dead ones (echo by default).",
    "wskeepalive",
)
