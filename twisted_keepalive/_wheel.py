"""
One timer for the keepalive deadlines of many connections.

A ``DelayedCall`` per connection costs a push onto the reactor's timer heap
for every Ping (a dozen Python comparisons at a few thousand connections), a
reactor turn of its own when deadlines are spread out, and an object per
connection for the garbage collector to walk.  Here deadlines are rounded up
to a grid slot and every connection due in a slot shares that slot's one
``DelayedCall``: scheduling, moving and cancelling are dictionary operations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from twisted.logger import Logger

_log = Logger(namespace="twisted_keepalive")


class _Owner(Protocol):
    def _keepalive_wheel_fired(self) -> None: ...


class TimerWheel:
    """
    Deadlines on a grid of ``grid`` seconds, one ``DelayedCall`` per occupied
    slot.

    :param clock: the ``IReactorTime`` that runs the slots.
    :param now: the monotonic clock deadlines are given in (seconds).
    :param grid: the slot width, seconds; a deadline runs at most this late,
        never early.
    """

    def __init__(self, clock: Any, now: Callable[[], float], grid: float) -> None:
        self.clock = clock
        self._now = now
        self.grid = grid
        self._slots: dict[int, dict[_Owner, None]] = {}
        self._calls: dict[int, Any] = {}

    def slot_of(self, wake_at: float) -> int:
        """The slot a deadline (monotonic seconds) falls in: the first not before it."""
        return math.ceil(wake_at / self.grid)

    def add(self, owner: _Owner, slot: int) -> None:
        """Call ``owner._keepalive_wheel_fired()`` when ``slot`` comes."""
        bucket = self._slots.get(slot)
        if bucket is None:
            bucket = self._slots[slot] = {}
            delay = max(0.0, slot * self.grid - self._now())
            self._calls[slot] = self.clock.callLater(delay, self._fire, slot)
        bucket[owner] = None

    def remove(self, owner: _Owner, slot: int) -> None:
        """Forget ``owner`` in ``slot`` (nothing happens if it is not there)."""
        bucket = self._slots.get(slot)
        if bucket is None:
            return
        bucket.pop(owner, None)
        if not bucket:
            del self._slots[slot]
            self._calls.pop(slot).cancel()

    def _fire(self, slot: int) -> None:
        del self._calls[slot]
        for owner in self._slots.pop(slot, ()):
            try:
                owner._keepalive_wheel_fired()
            except Exception:
                # One connection's failure must not leave the others in this
                # slot without their deadline.
                _log.failure("keepalive deadline of {owner!r} failed", owner=owner)

    def __len__(self) -> int:
        """Connections waiting on the wheel."""
        return sum(len(bucket) for bucket in self._slots.values())
