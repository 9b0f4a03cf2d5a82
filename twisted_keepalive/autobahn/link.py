"""
One connection's keepalive on Autobahn: what the framing-neutral
:class:`KeepaliveLink <twisted_keepalive.glue.link.KeepaliveLink>` leaves to
each framing -- whether the connection is open, the keepalive Ping as a
ready-made frame, what Autobahn shows of the peer's progress, Close 1011
through the route Autobahn leaves open, and the application's hooks.

The per-Ping path, top to bottom: ``KeepaliveLink.wheel_fired`` →
``KeepaliveLink.wake`` → :meth:`Link.send_keepalive`; then the Pong through
``KeepaliveLink.pong_received``, which moves the wheel slot.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import ConnectionClosed
from ..core.stats import KeepaliveStats
from ..core.verdict import Evidence, Timeout
from ..core.wheel import TimerWheel
from ..glue import transport as probes
from ..glue.link import KeepaliveLink
from .closing import send_timeout_close
from .pongs import PongPacer, needs_pacing


class Link(KeepaliveLink):
    """The keepalive of one Autobahn connection: its core and its timers."""

    TIMEOUT_HOOK_FAILED = "onKeepaliveTimeout of {protocol!r} raised; closing the connection anyway"

    __slots__ = (
        "frame",
        "frame_at",
        "head",
        "masked",
        "pongs",
        "protocol",
        "sock",
        "tx_mark",
    )

    def __init__(
        self,
        protocol: Any,
        wheel: TimerWheel,
        stats: KeepaliveStats | None,
    ) -> None:
        super().__init__(wheel, stats)
        self.protocol = protocol
        self.frame: Any = None
        self.frame_at = 0.0
        self.tx_mark = 0
        self.head: bytes | None = None
        self.masked = False
        self.sock: Any = None
        self.pongs: PongPacer | None = None

    # -- the framing --------------------------------------------------------

    def is_open(self) -> bool:
        protocol = self.protocol
        return bool(protocol.state == protocol.STATE_OPEN)

    def peer(self) -> str:
        return str(self.protocol.peer)

    def application(self) -> Any:
        return self.protocol

    def tcp_transport(self) -> Any:
        return self.protocol.transport

    def report_latency(self, latency: float) -> None:
        self.protocol.onLatency(latency)

    def report_timeout(self, timeout: Timeout) -> None:
        self.protocol.onKeepaliveTimeout(timeout)

    def send_timeout_close(self) -> None:
        send_timeout_close(self.protocol)

    # -- the keepalive Ping ---------------------------------------------------

    def choose_framing(self) -> None:
        """Decide once how keepalive Pings are written on this connection."""
        protocol = self.protocol
        if getattr(protocol, "logFrames", False) or getattr(protocol, "logOctets", False):
            self.head = None  # Autobahn logs every frame: let it.
            return
        # FIN + Ping, then the length (4) with the mask bit on the client side.
        self.masked = not protocol.factory.isServer
        self.head = probes.ping_head(4, self.masked)
        self.sock = probes.direct_socket(protocol.transport)

    def send_ping(self, payload: bytes) -> None:
        """An application Ping, through Autobahn's buffering but our masking."""
        protocol = self.protocol
        if self.head is None or not self.masked:
            protocol.sendPing(payload)
            return
        # Autobahn masks client frames with the random module; RFC 6455 5.3
        # asks for a key nobody can predict.
        frame = probes.ping_frame(probes.ping_head(len(payload), True), payload, True)
        protocol.sendData(frame)

    def send_keepalive(self) -> None:
        heartbeat = self.heartbeat
        payload = heartbeat.keepalive_payload
        assert payload is not None
        protocol = self.protocol
        transport = protocol.transport
        traffic = protocol.trafficStats
        before = traffic.outgoingOctetsWireLevel
        # Whether our Ping waits behind our own data (a slow reader) matters
        # only if the application wrote since the last Ping: an idle
        # connection skips the measurement and its system call.
        queued = probes.unsent(transport) if before != self.tx_mark else 0
        head = self.head
        if head is None or protocol.send_queue:
            # Autobahn's own framing: it logs frames or octets, or it holds
            # chopped writes our Ping must queue behind.
            protocol.sendPing(payload)
        else:
            # The keepalive Ping is always 4 bytes: build the frame here
            # rather than through sendPing() -> sendFrame() -> sendData(),
            # which cost more than the rest of the keepalive cycle together.
            frame = probes.ping_frame(head, payload, self.masked)
            sock = self.sock
            if sock is not None and probes.buffer_is_empty(transport):
                probes.send_past_buffer(transport, sock, frame)
            else:
                transport.write(frame)
            traffic.outgoingOctetsWireLevel = before + len(frame)
        self.tx_mark = traffic.outgoingOctetsWireLevel
        if queued:
            # Remember how much had left when the Ping was queued, so that a
            # slow reader still draining our data is not taken for dead.
            heartbeat.queued_behind(before - queued)

    # -- the peer's Pings ------------------------------------------------------

    def admit_ping(self, payload: bytes) -> bool:
        """Whether the peer's Ping is answered now (see :mod:`pongs`)."""
        pacer = self.pongs
        if pacer is None:
            if not needs_pacing(self.protocol.transport):
                return True
            pacer = self.pongs = PongPacer(
                self.protocol, self.clock, self.protocol._keepalive_answer_ping
            )
        return pacer.admit(payload)

    def pong_written(self) -> None:
        pacer = self.pongs
        if pacer is not None:
            pacer.written()

    # -- verdicts ---------------------------------------------------------------

    def evidence(self) -> Evidence:
        protocol = self.protocol
        queued = probes.unsent(protocol.transport)
        written = protocol.trafficStats.outgoingOctetsWireLevel
        frame = getattr(protocol, "current_frame", None)
        return Evidence(
            received_at=self.rx_at,
            mid_frame=frame is not None and frame is self.frame,
            frame_began_at=self.frame_at,
            delivered=None if queued is None else written - queued,
            queued=queued,
            unread=probes.kernel_unread(protocol.transport),
        )

    # -- the end ----------------------------------------------------------------

    def stop(self, closed: ConnectionClosed) -> None:
        if self.pongs is not None:
            self.pongs.stop()
        super().stop(closed)
