"""
One connection's keepalive on ``twisted.web.websocket``: what the
framing-neutral :class:`KeepaliveLink <twisted_keepalive.glue.link.KeepaliveLink>` leaves
to each framing.

- Open: from the end of the opening handshake until a Close goes either way
  (ours through :meth:`WebLink.local_close`; the peer's makes Twisted answer
  it and close the TCP connection, which marks the transport disconnecting).
- Pings: the keepalive Ping is 4 bytes, written as a ready-made frame (past
  Twisted's write buffer when it is empty, as on Autobahn's framing); a
  control frame is never compressed and Twisted writes whole messages, so it
  can never land inside another frame.  Application Pings go through
  Twisted's ``ping()``.
- Evidence: the peer's bytes are followed frame by frame
  (:mod:`twisted_keepalive.web.frames`); our own are counted as they are
  written, so that a Ping queued behind data a slow reader is draining is
  told from one nobody reads.
- The 1011 Close goes out through Twisted's ``loseConnection(code, reason)``,
  which closes the TCP connection once the Close has left; the abort
  ``close_timeout`` later frees a peer that never drains.  Any other close --
  the application's, or the peer's Close that Twisted answers -- gets the
  same bound.
"""

from __future__ import annotations

from typing import Any

from wsproto.utilities import LocalProtocolError

from ..core.errors import ConnectionClosed
from ..core.stats import KeepaliveStats
from ..core.verdict import Evidence, Timeout
from ..core.wheel import TimerWheel
from ..glue import transport as probes
from ..glue.closing import TIMEOUT_CLOSE_CODE, TIMEOUT_CLOSE_REASON
from ..glue.link import KeepaliveLink
from . import hooks
from .frames import FrameTracker


def frame_size(payload_length: int, masked: bool) -> int:
    """Bytes on the wire of one frame carrying ``payload_length`` bytes."""
    if payload_length < 126:
        head = 2
    elif payload_length < 0x10000:
        head = 4
    else:
        head = 10
    return head + (4 if masked else 0) + payload_length


class WebLink(KeepaliveLink):
    """The keepalive of one ``twisted.web.websocket`` connection."""

    TIMEOUT_HOOK_FAILED = "keepaliveTimedOut of {protocol!r} raised; closing the connection anyway"

    __slots__ = (
        "app",
        "closing",
        "frame_at",
        "frame_seq",
        "frames",
        "head",
        "masked",
        "sent_close",
        "sock",
        "tcp",
        "tx_mark",
        "wire",
        "written",
    )

    def __init__(
        self,
        app: Any,
        wire: Any,
        tcp: Any,
        masked: bool,
        wheel: TimerWheel,
        stats: KeepaliveStats | None,
    ) -> None:
        super().__init__(wheel, stats)
        #: The application's protocol (hooks, logs).
        self.app = app
        #: Twisted's WebSocket transport, and the byte stream under it.
        self.wire = wire
        self.tcp = tcp
        self.masked = masked
        self.head = probes.ping_head(4, masked)
        self.sock = probes.direct_socket(tcp)
        #: Bytes of our stream written so far (frames we or the application wrote).
        self.written = 0
        self.tx_mark = 0
        self.closing = False
        #: Our own Close (the application's or a drain's), for pending Pings
        #: when the peer's answer never comes.
        self.sent_close: ConnectionClosed | None = None
        # A client sees the server's HTTP response before the first frame.
        self.frames = FrameTracker(http_first=masked)
        self.frame_seq = 0
        self.frame_at = 0.0

    # -- the framing --------------------------------------------------------

    def is_open(self) -> bool:
        return not self.closing and not getattr(self.tcp, "disconnecting", False)

    def peer(self) -> str:
        return peer_name(self.tcp)

    def application(self) -> Any:
        return self.app

    def tcp_transport(self) -> Any:
        return self.tcp

    def report_latency(self, latency: float) -> None:
        hook = getattr(self.app, "latencyMeasured", None)
        if hook is not None:
            hook(latency)

    def report_timeout(self, timeout: Timeout) -> None:
        hook = getattr(self.app, "keepaliveTimedOut", None)
        if hook is not None:
            hook(timeout)

    def send_timeout_close(self) -> None:
        self.local_close(TIMEOUT_CLOSE_CODE, TIMEOUT_CLOSE_REASON)

    def local_close(self, code: int, reason: str) -> None:
        """
        Close the connection from our side with ``code`` and ``reason``;
        the TCP connection is aborted ``close_timeout`` seconds later if it
        is still there.  Closing again does nothing.
        """
        if self.closing:
            return
        self.closing = True
        # Pending Pings wait for the peer's answer, as on Autobahn's framing;
        # a ping() meanwhile is told the connection is closing.
        self.sent_close = ConnectionClosed(code, reason or "connection closed")
        self.heartbeat.halt()
        self.reschedule()
        self.arm_abort()
        try:
            hooks.send_close(self.wire, code, reason)
        except LocalProtocolError:
            # The peer's Close crossed ours: Twisted has answered it and is
            # closing already.
            self.tcp.loseConnection()

    # -- our bytes --------------------------------------------------------------

    def count_message(self, payload_length: int) -> None:
        """Count the wire bytes of a message we sent (``payload_length`` bytes of it)."""
        self.written += frame_size(payload_length, self.masked)

    def send_keepalive(self) -> None:
        heartbeat = self.heartbeat
        payload = heartbeat.keepalive_payload
        assert payload is not None
        tcp = self.tcp
        before = self.written
        # Only a connection that wrote since the last Ping can have its Ping
        # queued behind its own data: an idle one skips the system call.
        queued = probes.unsent(tcp) if before != self.tx_mark else 0
        frame = probes.ping_frame(self.head, payload, self.masked)
        sock = self.sock
        if sock is not None and probes.buffer_is_empty(tcp):
            probes.send_past_buffer(tcp, sock, frame)
        else:
            tcp.write(frame)
        self.written = self.tx_mark = before + len(frame)
        if queued:
            heartbeat.queued_behind(before - queued)

    def send_ping(self, payload: bytes) -> None:
        self.wire.ping(payload)
        self.written += frame_size(len(payload), self.masked)

    # -- the peer's bytes -------------------------------------------------------

    def received(self, data: bytes) -> None:
        """The peer's bytes, just before Twisted reads them."""
        now = self.rx_at = self.wheel.now()
        frames = self.frames
        closing = frames.close_seen
        frames.feed(data)
        if frames.begun != self.frame_seq:
            self.frame_seq = frames.begun
            self.frame_at = now
        if frames.close_seen and not closing:
            # Twisted answers the peer's Close and closes the TCP connection
            # once our buffer has drained -- which a peer that stopped
            # reading never lets happen: the abort bounds that wait too.
            self.arm_abort()

    def evidence(self) -> Evidence:
        queued = probes.unsent(self.tcp)
        return Evidence(
            received_at=self.rx_at,
            mid_frame=self.frames.mid_frame,
            frame_began_at=self.frame_at,
            delivered=None if queued is None else self.written - queued,
            queued=queued,
            unread=probes.kernel_unread(self.tcp),
        )

    def lost(self) -> ConnectionClosed:
        """Why the connection ended, as pending Pings are told."""
        closed = self.closed
        if closed is not None:
            return closed
        frames = self.frames
        if frames.close_seen:
            # As on Autobahn's framing: the peer's reason, else a generic one.
            return ConnectionClosed(frames.close_code, frames.close_reason or "connection closed")
        # Twisted stops reading once its Close is out: the peer's answer is
        # rarely seen, and our own Close says more than 1006 would.
        return self.sent_close or ConnectionClosed(1006, "connection lost")


def peer_name(transport: Any) -> str:
    """The peer of ``transport`` as Autobahn writes it (``tcp4:127.0.0.1:9000``)."""
    try:
        address = transport.getPeer()
    except Exception:
        return "unknown"
    kind = getattr(address, "type", None)
    if kind in ("TCP", "TCP6"):
        family = "tcp6" if ":" in address.host else "tcp4"
        return f"{family}:{address.host}:{address.port}"
    name = getattr(address, "name", None)
    if name is not None:
        return f"unix:{name.decode() if isinstance(name, bytes) else name}"
    return str(address)
