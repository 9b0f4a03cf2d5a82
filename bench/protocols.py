"""
Protocols for ``twistd wskeepalive --protocol`` in the benchmarks (the
scripts put bench/ on ``PYTHONPATH``): the served echo protocol with one
setting or one candidate change, so that the real server measures it.

- ``protocols.Spread0`` / ``protocols.Spread05``: ``first_ping_spread`` 0.0
  and 0.5 (the default is 1.0), for bench/herd.py;
- ``protocols.TimerPerPing``: a per-connection timer per Ping that lives one
  interval, for bench/scale.py ``--protocol`` (see its docstring).
"""

from __future__ import annotations

from twisted_keepalive.server.echo import EchoProtocol


class Spread0(EchoProtocol):
    """First Ping exactly one interval after the handshake: no jitter."""

    first_ping_spread = 0.0


class Spread05(EchoProtocol):
    """First Ping at a random point of the second half of the first interval."""

    first_ping_spread = 0.5


def _nothing() -> None:
    pass


class TimerPerPing(EchoProtocol):
    """
    The echo protocol plus one ``callLater`` per connection per Pong that
    lives one interval and does nothing: what the mixin did before its timer
    wheel (a ``DelayedCall`` per connection per Ping), and what many
    applications do (a per-connection timer, a per-message record kept for a
    while).  Such objects outlive Python's young collections, reach the
    oldest generation, and make it collect everything every few seconds.
    """

    def onLatency(self, latency: float) -> None:
        self.factory.reactor.callLater(self.ping_interval or 1.0, _nothing)
