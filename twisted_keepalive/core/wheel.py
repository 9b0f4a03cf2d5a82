"""
One timer for the keepalive deadlines of many connections.

A ``DelayedCall`` per connection costs a push onto the reactor's timer heap
for every Ping (a dozen Python comparisons at a few thousand connections), a
reactor turn of its own when deadlines are spread out, and an object per
connection for the garbage collector to walk.  Here deadlines are rounded up
to a grid slot and every connection due in a slot shares that slot's one
``DelayedCall``: scheduling, moving and cancelling are dictionary operations.

The wheel runs on any ``IReactorTime``: the reactor in production, a
``twisted.internet.task.Clock`` in tests -- the same code either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from twisted.logger import Logger

_log = Logger(namespace="twisted_keepalive")


#: Seconds; the default slot width.  At 4,000 connections pinging every
#: second, per-connection deadlines woke the reactor about 1,400 times a
#: second; on a 20 ms grid at most 50.  A deadline is never early and at
#: most one slot late.
DEFAULT_GRID = 0.02


class WheelOwner(Protocol):
    """What the wheel calls when an owner's slot comes."""

    def wheel_fired(self) -> None: ...


class TimerWheel:
    """
    Deadlines on a grid of ``grid`` seconds, one ``DelayedCall`` per occupied
    slot.

    :param clock: the ``IReactorTime`` that runs the slots.
    :param now: the clock deadlines are given in (seconds): a monotonic one
        on the reactor, ``clock.seconds`` on a test clock.
    :param grid: the slot width, seconds; a deadline runs at most this late,
        never early.  Default :data:`DEFAULT_GRID`.
    """

    def __init__(
        self, clock: Any, now: Callable[[], float], grid: float = DEFAULT_GRID
    ) -> None:
        if not grid > 0:
            raise ValueError(f"grid must be a positive number of seconds, not {grid!r}")
        self.clock = clock
        #: The clock deadlines are given in.
        self.now = now
        self.grid = grid
        self._slots: dict[int, dict[WheelOwner, None]] = {}
        self._calls: dict[int, Any] = {}
        # The slot being fired and the owners it has yet to call, so that an
        # owner removed by another one's callback is not called after all.
        self._firing_slot: int | None = None
        self._firing: dict[WheelOwner, None] = {}

    def slot_of(self, wake_at: float) -> int:
        """The slot a deadline (monotonic seconds) falls in: the first not before it."""
        grid = self.grid
        slot = math.ceil(wake_at / grid)
        # The division may round down past a grid point; never run early.
        return slot if slot * grid >= wake_at else slot + 1

    def add(self, owner: WheelOwner, slot: int) -> None:
        """Call ``owner.wheel_fired()`` when ``slot`` comes."""
        bucket = self._slots.get(slot)
        if bucket is None:
            bucket = self._slots[slot] = {}
            self._calls[slot] = self.clock.callLater(self._delay_to(slot), self._fire, slot)
        bucket[owner] = None

    def _delay_to(self, slot: int) -> float:
        """Seconds from now to ``slot``'s time, rounded so as never to arrive early."""
        target = slot * self.grid
        now = self.now()
        delay = max(0.0, target - now)
        # now + (target - now) can come out a hair below target in floating
        # point: the clock would run the slot before its deadlines are due.
        while now + delay < target:
            delay = math.nextafter(delay, math.inf)
        return delay

    def remove(self, owner: WheelOwner, slot: int) -> None:
        """Forget ``owner`` in ``slot`` (nothing happens if it is not there)."""
        if slot == self._firing_slot:
            self._firing.pop(owner, None)
            return
        bucket = self._slots.get(slot)
        if bucket is None:
            return
        bucket.pop(owner, None)
        if not bucket:
            del self._slots[slot]
            self._calls.pop(slot).cancel()

    def _fire(self, slot: int) -> None:
        del self._calls[slot]
        bucket = self._slots.pop(slot, None)
        if not bucket:
            return
        self._firing_slot, self._firing = slot, bucket
        try:
            while bucket:
                # popitem: O(1) at any size; the order within a slot is free.
                owner, _ = bucket.popitem()
                try:
                    owner.wheel_fired()
                except Exception:
                    # One connection's failure must not leave the others in
                    # this slot without their deadline.
                    _log.failure("keepalive deadline of {owner!r} failed", owner=owner)
        finally:
            self._firing_slot, self._firing = None, {}

    def __len__(self) -> int:
        """Connections waiting on the wheel."""
        return sum(len(bucket) for bucket in self._slots.values()) + len(self._firing)
