"""
Where the peer's byte stream stands between RFC 6455 frames: plain data in,
plain data out, no I/O.

Twisted's WebSocket API delivers whole messages and nothing of the frames
they came in, but a verdict needs to know whether the peer is in the middle
of a frame (it cannot send its Pong before that frame ends) and when that
frame began.  :class:`FrameTracker` follows the frame boundaries of the
bytes as they arrive -- headers only; a payload is skipped by its length, so
a large frame costs one subtraction per chunk -- and reads the code and
reason of the peer's Close frame (at most 125 bytes, however they are split).
"""

from __future__ import annotations

#: RFC 6455 5.2 opcode of a Close frame.
CLOSE_OPCODE = 0x8


class FrameTracker:
    """
    The frame boundaries of one direction of a WebSocket stream.

    :param http_first: the stream starts with an HTTP response (a client's
        view): everything up to its blank line is skipped.
    :ivar begun: frames whose first bytes have arrived so far.
    :ivar close_seen: a Close frame's header has arrived.
    :ivar close_code: the code of that Close frame, once its first two
        payload bytes have arrived; ``None`` before, or if it has none.
    :ivar close_reason: its reason (UTF-8, undecodable bytes replaced), once
        its whole payload has arrived; ``None`` before.
    """

    __slots__ = (
        "_close_key",
        "_close_left",
        "_close_payload",
        "_head",
        "_http",
        "_remaining",
        "begun",
        "close_code",
        "close_reason",
        "close_seen",
    )

    def __init__(self, http_first: bool = False) -> None:
        self._http: bytes | None = b"" if http_first else None
        self._head = b""
        self._remaining = 0
        self.begun = 0
        self.close_seen = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        # The Close frame's payload while it arrives: what came, its mask key,
        # how much is still to come.
        self._close_payload = b""
        self._close_key = b""
        self._close_left = 0

    @property
    def mid_frame(self) -> bool:
        """Whether a frame has begun and not ended."""
        return bool(self._remaining or self._head)

    def feed(self, data: bytes) -> None:
        """Follow ``data``, the next bytes of the stream."""
        remaining = self._remaining
        if remaining:
            if self._close_left:
                self._close_part(data[:remaining])
            # The common case for a large frame: all of it is payload.
            if len(data) <= remaining:
                self._remaining = remaining - len(data)
                return
            data = data[remaining:]
            self._remaining = 0
        if self._http is not None:
            data = self._skip_http(data)
        if self._head:
            data = self._head + data
            self._head = b""
        else:
            self.begun += 1 if data else 0
        self._frames(data)

    def _skip_http(self, data: bytes) -> bytes:
        seen = self._http + data  # type: ignore[operator]
        end = seen.find(b"\r\n\r\n")
        if end < 0:
            # Keep only what could be the start of the blank line.
            self._http = seen[-3:]
            return b""
        self._http = None
        return seen[end + 4 :]

    def _frames(self, data: bytes) -> None:
        # ``data`` starts at a frame header already counted in ``begun``.
        pos = 0
        size = len(data)
        while pos < size:
            if size - pos < 2:
                self._head = data[pos:]
                return
            second = data[pos + 1]
            length = second & 0x7F
            masked = second & 0x80
            header = 2 + (4 if masked else 0) + (2 if length == 126 else 8 if length == 127 else 0)
            if size - pos < header:
                self._head = data[pos:]
                return
            if length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            if data[pos] & 0x0F == CLOSE_OPCODE:
                key = data[pos + header - 4 : pos + header] if masked else b""
                self._close_frame(data, pos + header, length, key)
            pos += header + length
            if pos > size:
                self._remaining = pos - size
                return
            if pos < size:
                self.begun += 1

    def _close_frame(self, data: bytes, start: int, length: int, key: bytes) -> None:
        self.close_seen = True
        self._close_key = key
        self._close_left = length
        self._close_part(data[start : start + length])

    def _close_part(self, part: bytes) -> None:
        payload = self._close_payload = self._close_payload + part
        self._close_left -= len(part)
        if self._close_left and len(payload) < 2:
            return
        key = self._close_key
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        if len(payload) >= 2:
            self.close_code = int.from_bytes(payload[:2], "big")
        if not self._close_left:
            self.close_reason = payload[2:].decode("utf-8", "replace")
