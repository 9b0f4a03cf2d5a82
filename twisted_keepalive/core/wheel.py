"""
One timer for the keepalive deadlines of many connections.

A ``DelayedCall`` per connection costs a push onto the reactor's timer heap
for every Ping (a dozen Python comparisons at a few thousand connections), a
reactor turn of its own when deadlines are spread out, and an object per
connection for the garbage collector to walk.  Here deadlines are rounded up
to a grid slot, the connections due in a slot are a ring linked through
fields of their own (no container per slot), and the whole wheel has one
``DelayedCall``, for its earliest occupied slot: scheduling, moving and
cancelling a deadline are a few attribute writes and, for a slot nobody
occupied yet, one dictionary entry and one push onto a heap of slot numbers.

The wheel runs on any ``IReactorTime``: the reactor in production, a
``twisted.internet.task.Clock`` in tests -- the same code either way.
"""

from __future__ import annotations

import heapq
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
    """
    What the wheel schedules: something with a :meth:`wheel_fired` and the
    three link fields of :class:`WheelEntry`, which the wheel alone writes.
    """

    wheel_slot: Any
    wheel_prev: Any
    wheel_next: Any

    def wheel_fired(self) -> None: ...


class WheelEntry:
    """
    The fields a :class:`TimerWheel` keeps on each owner: its slot (``None``
    while it has no deadline) and its neighbours in that slot's ring.

    Subclass it (it has ``__slots__``) and define ``wheel_fired``.
    """

    __slots__ = ("wheel_next", "wheel_prev", "wheel_slot")

    def __init__(self) -> None:
        self.wheel_slot: _Slot | None = None
        self.wheel_prev: Any = None
        self.wheel_next: Any = None


class _Slot:
    """An occupied grid slot: the head of the ring of owners due in it."""

    __slots__ = ("number", "wheel_next", "wheel_prev")

    def __init__(self, number: int) -> None:
        self.number = number
        self.wheel_next: Any = self
        self.wheel_prev: Any = self


class TimerWheel:
    """
    Deadlines on a grid of ``grid`` seconds, one ``DelayedCall`` for them all.

    Each owner has at most one deadline: :meth:`add` moves it.

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
        self._slots: dict[int, _Slot] = {}
        # Slot numbers in time order; a number whose slot emptied stays until
        # it reaches the top, so removing costs no heap operation.
        self._numbers: list[int] = []
        self._call: Any = None
        self._call_slot: int | None = None
        # While slots fire, new slots wait here: a slot an owner creates from
        # its own callback runs on the next turn, never in this one.
        self._firing = False
        self._created: list[int] = []
        self._owners = 0

    def slot_of(self, wake_at: float) -> int:
        """The slot a deadline (monotonic seconds) falls in: the first not before it."""
        grid = self.grid
        slot = math.ceil(wake_at / grid)
        # The division may round down past a grid point; never run early.
        return slot if slot * grid >= wake_at else slot + 1

    def add(self, owner: WheelOwner, slot: int) -> None:
        """Call ``owner.wheel_fired()`` when ``slot`` comes, instead of any earlier deadline."""
        if owner.wheel_slot is not None:
            self.remove(owner)
        node = self._slots.get(slot)
        if node is None:
            node = self._slots[slot] = _Slot(slot)
            if self._firing:
                self._created.append(slot)
            else:
                heapq.heappush(self._numbers, slot)
                if self._call_slot is None or slot < self._call_slot:
                    self._arm(slot)
        last = node.wheel_prev
        owner.wheel_prev = last
        owner.wheel_next = node
        last.wheel_next = owner
        node.wheel_prev = owner
        owner.wheel_slot = node
        self._owners += 1

    def remove(self, owner: WheelOwner) -> None:
        """Forget ``owner``'s deadline (nothing happens if it has none)."""
        found: _Slot | None = owner.wheel_slot
        if found is None:
            return
        node = found
        number = node.number
        before, after = owner.wheel_prev, owner.wheel_next
        before.wheel_next = after
        after.wheel_prev = before
        owner.wheel_slot = owner.wheel_prev = owner.wheel_next = None
        self._owners -= 1
        if after is node and before is node and self._slots.get(number) is node:
            slots = self._slots
            del slots[number]
            # An empty ring points at itself: unlink it, so that reference
            # counting frees it now instead of the cycle collector later.
            node.wheel_next = node.wheel_prev = None
            if number == self._call_slot:
                self._rearm()
            elif len(self._numbers) > 2 * len(slots) + 64 and not self._firing:
                # Connections alone in their slots leave a number behind at
                # every Pong: drop them before they outnumber the slots.
                self._numbers = list(slots)
                heapq.heapify(self._numbers)

    def _arm(self, slot: int) -> None:
        call = self._call
        if call is not None:
            call.cancel()
        self._call_slot = slot
        self._call = self.clock.callLater(self._delay_to(slot), self._fire, slot)

    def _rearm(self) -> None:
        """Point the one call at the earliest occupied slot, or cancel it."""
        numbers, slots = self._numbers, self._slots
        while numbers and numbers[0] not in slots:
            heapq.heappop(numbers)
        if numbers:
            if numbers[0] != self._call_slot:
                self._arm(numbers[0])
        elif self._call is not None:
            self._call.cancel()
            self._call = self._call_slot = None

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

    def _fire(self, armed: int) -> None:
        self._call = self._call_slot = None
        numbers, slots, grid = self._numbers, self._slots, self.grid
        # The armed slot is due (the reactor's clock said so); so is every
        # other whose time the deadlines' clock has reached.
        now = self.now()
        self._firing = True
        node = None
        try:
            while numbers and (numbers[0] <= armed or numbers[0] * grid <= now):
                node = slots.pop(heapq.heappop(numbers), None)
                if node is not None:
                    self._fire_slot(node)
            node = None
        finally:
            self._firing = False
            if node is not None:
                # Unwinding (a BaseException from an owner): the owners this
                # slot has yet to call keep their deadline, now overdue.
                for owner in self._owners_of(node):
                    self.add(owner, node.number)
            for slot in self._created:
                heapq.heappush(self._numbers, slot)
            self._created.clear()
            self._rearm()

    def _fire_slot(self, node: _Slot) -> None:
        # The slot is out of the dict: an owner its callbacks remove unlinks
        # from this ring as usual, one they add goes to a new slot.
        while (owner := node.wheel_next) is not node:
            after = owner.wheel_next
            node.wheel_next = after
            after.wheel_prev = node
            owner.wheel_slot = owner.wheel_prev = owner.wheel_next = None
            self._owners -= 1
            try:
                owner.wheel_fired()
            except Exception:
                # One connection's failure must not leave the others in
                # this slot without their deadline.
                _log.failure("keepalive deadline of {owner!r} failed", owner=owner)
        node.wheel_next = node.wheel_prev = None

    @staticmethod
    def _owners_of(node: _Slot) -> list[Any]:
        owners, owner = [], node.wheel_next
        while owner is not node:
            owners.append(owner)
            owner = owner.wheel_next
        return owners

    def __len__(self) -> int:
        """Connections waiting on the wheel."""
        return self._owners
