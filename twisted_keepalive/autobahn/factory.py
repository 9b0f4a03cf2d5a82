"""
What the adapter keeps on an Autobahn factory: the keepalive options given
with :func:`set_keepalive_options`, one timer wheel per clock the factory's
connections run on, and whether the auto-ping warning was logged.  All of it
lives in one :class:`FactoryRecord`, so nothing else is stuck on the factory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from twisted.logger import Logger

from ..core.config import DEFAULT_PING_INTERVAL, KeepaliveConfig, validate_setting
from ..core.wheel import DEFAULT_GRID, TimerWheel
from .settings import FACTORY_RECORD

_log = Logger(namespace="twisted_keepalive")

#: Distinct settings combinations a factory shares configs for.
MAX_SHARED_CONFIGS = 64

_NO_OPTIONS: Mapping[str, float | bool | None] = MappingProxyType({})


class FactoryRecord:
    """
    The keepalive state of one factory, shared by its connections.

    :ivar options: the settings given with :func:`set_keepalive_options`.
    :ivar grid: seconds, the slot width of wheels made from now on.
    """

    __slots__ = ("autoping_warned", "configs", "grid", "options", "wheels")

    def __init__(self) -> None:
        self.options = _NO_OPTIONS
        self.grid = DEFAULT_GRID
        self.wheels: dict[Any, TimerWheel] = {}
        self.configs: dict[tuple[Any, ...], KeepaliveConfig] = {}
        self.autoping_warned = False

    def config_for(self, *values: Any) -> KeepaliveConfig:
        """
        The :class:`KeepaliveConfig` of these settings (in its field order),
        one shared value for all the connections that resolve to them: a
        config per connection would cost more memory than the keepalive.
        """
        config = self.configs.get(values)
        if config is None:
            config = KeepaliveConfig(*values)
            # Per-connection settings could make the combinations endless.
            if len(self.configs) < MAX_SHARED_CONFIGS:
                self.configs[values] = config
        return config

    def wheel_for(self, clock: Any, now: Callable[[], float]) -> TimerWheel:
        """The one wheel for this factory's connections on ``clock``."""
        wheel = self.wheels.get(clock)
        if wheel is None:
            wheel = self.wheels[clock] = TimerWheel(clock, now, self.grid)
        return wheel

    def waiting(self) -> int:
        """Connections of this factory with a deadline on a wheel."""
        return sum(len(wheel) for wheel in self.wheels.values())


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
    current = _NO_OPTIONS if record is None else record.options
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
