"""
What the connections of one factory share, whatever the framing: the
settings given for the factory, one frozen config per settings combination,
and one timer wheel per clock they run on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..core.config import KeepaliveConfig
from ..core.wheel import DEFAULT_GRID, TimerWheel

#: Distinct settings combinations a factory shares configs for.
MAX_SHARED_CONFIGS = 64

#: The options of a factory none were given for: empty and read-only.
NO_OPTIONS: Mapping[str, float | bool | None] = MappingProxyType({})


class SharedRecord:
    """
    The keepalive state of one factory, shared by its connections.

    :ivar options: the settings given for the factory (validated).
    :ivar grid: seconds, the slot width of wheels made from now on.
    """

    __slots__ = ("configs", "grid", "options", "wheels")

    def __init__(self) -> None:
        self.options = NO_OPTIONS
        self.grid = DEFAULT_GRID
        self.wheels: dict[Any, TimerWheel] = {}
        self.configs: dict[tuple[Any, ...], KeepaliveConfig] = {}

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

    def connection_wheel(self, clock: Any, reactor: Any) -> TimerWheel:
        """
        The wheel for a new connection: on ``clock`` and its own time if one
        was injected (a ``task.Clock`` in tests), else on ``reactor`` (the
        global one if ``None``) with the monotonic clock.  The wheel's
        ``clock`` and ``now`` are then the connection's too.
        """
        if clock is not None:
            # An injected clock is the only time there is.
            return self.wheel_for(clock, clock.seconds)
        if reactor is None:
            from twisted.internet import reactor
        # A real reactor's seconds() is wall-clock time, which jumps;
        # latency and deadlines are measured on the monotonic clock.
        return self.wheel_for(reactor, time.monotonic)

    def waiting(self) -> int:
        """Connections of this factory with a deadline on a wheel."""
        return sum(len(wheel) for wheel in self.wheels.values())
