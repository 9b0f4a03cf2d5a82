"""
What the adapter keeps on an Autobahn factory: the keepalive options given
with :func:`set_keepalive_options`, the configs and wheels every framing's
factory shares (:mod:`twisted_keepalive.glue.record`), and whether the
auto-ping warning was logged.  All of it lives in one :class:`FactoryRecord`,
so nothing else is stuck on the factory.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from twisted.logger import Logger

from ..core.config import DEFAULT_PING_INTERVAL, validate_setting
from ..glue.record import MAX_SHARED_CONFIGS, NO_OPTIONS, SharedRecord
from .settings import FACTORY_RECORD

_log = Logger(namespace="twisted_keepalive")

__all__ = [
    "MAX_SHARED_CONFIGS",
    "FactoryRecord",
    "disable_autoping",
    "factory_record",
    "set_keepalive_options",
]


class FactoryRecord(SharedRecord):
    """
    What an Autobahn factory shares (see :class:`SharedRecord`), and whether
    the auto-ping warning was logged for it.
    """

    __slots__ = ("autoping_warned",)

    def __init__(self) -> None:
        super().__init__()
        self.autoping_warned = False


def factory_record(factory: Any) -> FactoryRecord:
    """The :class:`FactoryRecord` of ``factory``, made now if it has none."""
    record = getattr(factory, FACTORY_RECORD, None)
    if record is None:
        record = FactoryRecord()
        setattr(factory, FACTORY_RECORD, record)
    assert isinstance(record, FactoryRecord)
    return record


def set_keepalive_options(factory: object, **options: float | bool | None) -> None:
    """
    Configure keepalive for every connection a factory builds, the way
    Autobahn's ``factory.setProtocolOptions(...)`` configures its protocols::

        factory = WebSocketServerFactory("ws://127.0.0.1:9000")
        factory.protocol = Chat
        set_keepalive_options(factory, ping_interval=10.0, ping_timeout=5.0)

    Only the settings given change; each is validated now.  A factory's
    settings override the protocol class's attributes, and an attribute set on
    one protocol instance overrides both.

    :param factory: an Autobahn WebSocket server or client factory.
    :keyword ping_interval: seconds between keepalive pings; ``None`` disables
        keepalive and heartbeat.  Default 20.0.
    :keyword ping_timeout: seconds to wait for a Pong; ``None`` disables the
        heartbeat only.  Default 20.0.
    :keyword close_timeout: seconds between the 1011 Close frame of a keepalive
        timeout and the abort of the TCP connection.  Default 10.0.
    :keyword first_ping_spread: fraction (0 to 1) of the first interval over
        which first Pings are spread at random.  Default 1.0.
    :keyword browser_heartbeat: answer the heartbeat messages of
        ``keepalive.js`` (and keep them from ``onMessage``).  Default False.
    :raises TypeError: an unknown setting or a value that is not a number.
    :raises ValueError: a value that is not a positive, finite number of
        seconds, or keepalive on a factory that already runs Autobahn's own
        ``autoPingInterval`` (the peer would get two pings per interval).
    """
    validated = {name: validate_setting(name, value) for name, value in options.items()}
    record = getattr(factory, FACTORY_RECORD, None)
    current = NO_OPTIONS if record is None else record.options
    merged = {**current, **validated}
    auto_ping = getattr(factory, "autoPingInterval", 0)
    if auto_ping and merged.get("ping_interval", DEFAULT_PING_INTERVAL) is not None:
        raise ValueError(
            f"factory already runs Autobahn's auto-ping (autoPingInterval={auto_ping!r}); "
            "turn it off with setProtocolOptions(autoPingInterval=0) to use keepalive, "
            "or pass ping_interval=None"
        )
    factory_record(factory).options = MappingProxyType(merged)


def disable_autoping(protocol: Any) -> None:
    """
    Switch Autobahn's own auto-ping off on a connection that runs ours.

    Two keepalives would double the pings and race to fail the connection;
    ours has the timeout cause, the 1011 close and the latency, so Autobahn's
    stands down.  Warned once per factory, not once per connection.
    """
    interval = getattr(protocol, "autoPingInterval", 0)
    if not interval:
        return
    call = getattr(protocol, "autoPingPendingCall", None)
    if call is not None:
        call.cancel()
        protocol.autoPingPendingCall = None
    protocol.autoPingInterval = 0
    protocol.autoPingTimeout = 0
    record = factory_record(protocol.factory)
    if not record.autoping_warned:
        record.autoping_warned = True
        _log.warn(
            "Autobahn's autoPingInterval={auto_ping_interval} is set on the factory of "
            "{protocol}; KeepaliveMixin disabled it on these connections to avoid "
            "double pings. Set autoPingInterval=0 to silence this warning.",
            auto_ping_interval=interval,
            protocol=type(protocol).__qualname__,
        )
