"""
Where the peer's byte stream stands between RFC 6455 frames: plain data in,
plain data out, no I/O.

Twisted's WebSocket API delivers whole messages and nothing of the frames
they came in, but a verdict needs to know whether the peer is in the middle
of a frame (it cannot send its Pong before that frame ends) and when that
frame began.  :class:`FrameTracker` follows the frame boundaries of the
bytes as they arrive -- headers only; a payload is skipped by its length, so
a large frame costs one subtraction per chunk -- and notes the code of the
peer's Close frame.
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
    :ivar close_code: the code of that Close frame, when its first two
        payload bytes arrived with its header; else ``None``.
    """

    __slots__ = ("_head", "_http", "_remaining", "begun", "close_code", "close_seen")

    def __init__(self, http_first: bool = False) -> None:
        self._http: bytes | None = b"" if http_first else None
        self._head = b""
        self._remaining = 0
        self.begun = 0
        self.close_seen = False
        self.close_code: int | None = None

    @property
    def mid_frame(self) -> bool:
        """Whether a frame has begun and not ended."""
        return bool(self._remaining or self._head)

    def feed(self, data: bytes) -> None:
        """Follow ``data``, the next bytes of the stream."""
        remaining = self._remaining
        if remaining:
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
        code = data[start : start + 2]
        if length >= 2 and len(code) == 2:
            if key:
                code = bytes((code[0] ^ key[0], code[1] ^ key[1]))
            self.close_code = int.from_bytes(code, "big")
