"""
The one ledger of a connection's Pings in flight: keepalive and application
Pings alike, each with its payload, sending rank, send time and waiter.

It is a plain ``dict`` from payload to :class:`PendingPing`: dicts keep
insertion order, which is sending order, so "a Pong acknowledges its Ping and
every earlier one" pops from the front.  Ranks make that exact even when a
test clock gives two Pings the same time.
"""

from __future__ import annotations

import random
from typing import Any

#: With ``ping_timeout=None`` keepalive Pings go out whether or not Pongs come
#: back; the ledger keeps this many of them, so a Pong slower than the
#: interval still measures its round trip and a peer that never answers
#: costs no more memory than this.
MAX_UNANSWERED_KEEPALIVES = 8


class PendingPing:
    """One Ping in flight: its payload, sending rank and time, and its waiter."""

    __slots__ = ("payload", "rank", "sent_at", "waiter")

    def __init__(self, payload: bytes, rank: int, sent_at: float, waiter: Any) -> None:
        self.payload = payload
        self.rank = rank
        self.sent_at = sent_at
        #: The application's waiter, or ``None`` for a keepalive Ping.
        self.waiter = waiter


Ledger = dict[bytes, PendingPing]


def settle_up_to(
    ledger: Ledger, matched: PendingPing, now: float
) -> tuple[tuple[tuple[Any, float], ...], int]:
    """
    Take ``matched`` and every Ping sent before it out of the ledger.

    :return: the application waiters settled, as ``(waiter, round trip in
        seconds)`` in sending order, and how many keepalive Pings went.
    """
    settled = []
    keepalives = 0
    for ping in list(ledger.values()):
        if ping.rank > matched.rank:
            break
        del ledger[ping.payload]
        if ping.waiter is None:
            keepalives += 1
        else:
            settled.append((ping.waiter, now - ping.sent_at))
    return tuple(settled), keepalives


def drop_oldest_keepalive(ledger: Ledger) -> None:
    """Forget the oldest keepalive Ping in flight, if any."""
    for payload, ping in ledger.items():
        if ping.waiter is None:
            del ledger[payload]
            return


def fresh_payload(ledger: Ledger) -> bytes:
    """A random 4-byte payload that no Ping in the ledger uses."""
    while True:
        payload = random.getrandbits(32).to_bytes(4, "big")
        if payload not in ledger:
            return payload
