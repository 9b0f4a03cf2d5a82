"""
Small helpers for ``test_defects.py``: what a test needs to say "this
Deferred fired exactly once, with this", "this call raised nothing", and
"these are the mask keys a client put on the wire" -- all from the public
API and the bytes on the wire, nothing of the mixin's internals.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import LogEvent


class Outcomes:
    """Every result each watched Deferred fired with (a list per name)."""

    def __init__(self) -> None:
        self.results: dict[str, list[Any]] = {}

    def watch(
        self, name: str, deferred: Deferred[Any], then: Callable[[], object] | None = None
    ) -> None:
        """
        Record what ``deferred`` fires with, then call ``then`` (re-entrant
        application code, from inside the callback or errback).  The result
        is consumed, so a failure is never "unhandled".
        """
        record = self.results.setdefault(name, [])

        def settle(result: Any) -> None:
            record.append(result)
            if then is not None:
                then()

        deferred.addBoth(settle)

    def only(self, name: str) -> Any:
        """The one result ``name`` fired with; fails unless it fired exactly once."""
        fired = self.results[name]
        assert len(fired) == 1, f"the {name!r} Deferred fired {len(fired)} times: {fired!r}"
        return fired[0]


def raised_by(call: Callable[[], object]) -> BaseException | None:
    """Run ``call``; the exception it raised, or ``None``."""
    try:
        call()
    except Exception as e:
        return e
    return None


def errors_in(events: list[LogEvent]) -> list[LogEvent]:
    """The logged errors: failures, ``log.err`` and unhandled Deferred errors."""
    return [
        event
        for event in events
        if event.get("log_failure") is not None
        or event.get("isError")
        or getattr(event.get("log_level"), "name", None) in ("error", "critical")
    ]


def client_frames(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split a client's (masked) byte stream into ``(opcode, mask key, masked payload)``."""
    frames = []
    while data:
        opcode = data[0] & 0x0F
        assert data[1] & 0x80, "a client frame without a mask"
        length = data[1] & 0x7F
        pos = 2
        if length == 126:
            (length,) = struct.unpack("!H", data[2:4])
            pos = 4
        elif length == 127:
            (length,) = struct.unpack("!Q", data[2:10])
            pos = 10
        key = data[pos : pos + 4]
        pos += 4
        frames.append((opcode, key, data[pos : pos + length]))
        data = data[pos + length :]
    return frames


def unmask(key: bytes, payload: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))
