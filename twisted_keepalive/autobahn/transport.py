"""
Kept so that ``twisted_keepalive.autobahn.transport`` still imports: the
probes of Twisted's TCP transport serve both framings now and live in
:mod:`twisted_keepalive.glue.transport`.
"""

from ..glue.transport import (
    TWISTED_BUFFER_ATTRIBUTES,
    buffer_is_empty,
    direct_socket,
    kernel_unsent,
    ping_frame,
    ping_head,
    send_past_buffer,
    transport_backlog,
    unsent,
)

__all__ = [
    "TWISTED_BUFFER_ATTRIBUTES",
    "buffer_is_empty",
    "direct_socket",
    "kernel_unsent",
    "ping_frame",
    "ping_head",
    "send_past_buffer",
    "transport_backlog",
    "unsent",
]
