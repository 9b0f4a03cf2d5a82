"""
:class:`KeepaliveMixin`: Autobahn's events in, through the
:class:`twisted_keepalive.autobahn.link.Link` of each connection.

The mixin wraps Autobahn's internal dispatchers (see
:mod:`twisted_keepalive.autobahn.hooks` for why) and does nothing else with
them but hand the event on; its public face is the settings, ``latency``,
``ping()`` and two hooks for the application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime

from ..core import browser
from ..core.config import (
    DEFAULT_BROWSER_HEARTBEAT,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_FIRST_PING_SPREAD,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    KeepaliveConfig,
)
from ..core.errors import ConnectionClosed
from ..core.verdict import Timeout
from ..glue.pings import ping_payload, send_application_ping
from .factory import disable_autoping, factory_record
from .hooks import require_autobahn_hooks
from .inbound import debug_logging_off, read_lone_pong
from .link import Link
from .settings import KeepaliveMeta, Setting

__all__ = ["KeepaliveMixin"]

require_autobahn_hooks()


class KeepaliveMixin(metaclass=KeepaliveMeta):
    """
    Keepalive and heartbeat for an Autobahn Twisted WebSocket protocol.

    Put it first among the bases of a ``WebSocketServerProtocol`` or
    ``WebSocketClientProtocol`` subclass (the other order raises
    ``TypeError``)::

        class Chat(KeepaliveMixin, WebSocketServerProtocol):
            ping_interval = 20.0
            ping_timeout = 20.0

    After the opening handshake it sends a Ping every ``ping_interval``
    seconds (Ping to Ping, one keepalive Ping in flight at a time).  If no
    Pong comes back within ``ping_timeout`` seconds, it fails the connection
    with close code 1011 "keepalive ping timeout" and aborts the TCP
    connection ``close_timeout`` seconds later if it is still there.

    Settings -- class attributes (in the class body or assigned later),
    instance attributes, or per factory through :func:`set_keepalive_options`
    -- are validated when assigned; on a connection, its own value wins over
    its factory's, which wins over its class's:

    :cvar ping_interval: seconds between keepalive Pings; ``None`` disables
        keepalive and heartbeat (:meth:`ping` still works).  Default 20.0.
    :cvar ping_timeout: seconds to wait for the Pong; ``None`` disables the
        heartbeat only: Pings keep the connection busy but silence never
        fails it.  Default 20.0.
    :cvar close_timeout: seconds to wait for the closing handshake after a
        keepalive timeout before aborting the TCP connection.  Default 10.0.
    :cvar first_ping_spread: the first Ping goes out after
        ``ping_interval * (1 - first_ping_spread * U)``, ``U`` uniform in
        [0, 1): 1.0 (the default) spreads the Pings of clients that connected
        together over the whole interval; 0.0 sends the first Ping exactly
        one interval after the handshake.
    :cvar browser_heartbeat: answer the application-level heartbeats of the
        browser module ``keepalive.js`` (text messages ``"\\x00wsk1 ping …"``)
        and keep them from ``onMessage``.  Default False.
    :cvar clock: the ``IReactorTime`` that schedules the deadlines and gives
        the time; ``None`` (the default) uses the factory's reactor with a
        monotonic clock.  Inject a ``twisted.internet.task.Clock`` in tests.
    """

    if TYPE_CHECKING:
        ping_interval: float | None = DEFAULT_PING_INTERVAL
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT
        first_ping_spread: float = DEFAULT_FIRST_PING_SPREAD
        browser_heartbeat: bool = DEFAULT_BROWSER_HEARTBEAT
        # Provided by the Autobahn protocol this is mixed into.
        factory: Any
        transport: Any
        state: int
        STATE_OPEN: int

        def sendPing(self, payload: bytes | None = None) -> None: ...
        def sendMessage(self, payload: bytes, isBinary: bool = False) -> None: ...

    else:
        ping_interval = Setting("ping_interval", DEFAULT_PING_INTERVAL)
        ping_timeout = Setting("ping_timeout", DEFAULT_PING_TIMEOUT)
        close_timeout = Setting("close_timeout", DEFAULT_CLOSE_TIMEOUT)
        first_ping_spread = Setting("first_ping_spread", DEFAULT_FIRST_PING_SPREAD)
        browser_heartbeat = Setting("browser_heartbeat", DEFAULT_BROWSER_HEARTBEAT)

    clock: IReactorTime | None = None

    #: The connection's keepalive, from the opening handshake on.
    _keepalive_link: Link | None = None
    #: What carries it out; a subclass of Link can observe or delay the
    #: per-Ping path (the stall tests do).
    _keepalive_link_class: type[Link] = Link

    # -- public API ---------------------------------------------------------

    @property
    def latency(self) -> float:
        """
        Seconds of the last keepalive or :meth:`ping` round trip, measured with
        a monotonic clock; 0.0 before the first Pong.
        """
        link = self._keepalive_link
        return 0.0 if link is None else link.heartbeat.latency

    @property
    def keepalive_timeout(self) -> Timeout | None:
        """
        Why the heartbeat failed this connection (a :class:`Timeout`), or
        ``None`` if it did not.
        """
        link = self._keepalive_link
        return None if link is None else link.heartbeat.timeout

    @property
    def keepalive_config(self) -> KeepaliveConfig:
        """The settings in force on this connection (resolved when it opened)."""
        link = self._keepalive_link
        if link is not None and link.config is not None:
            return link.config
        return self._keepalive_resolve()

    def ping(self, data: bytes | str | None = None) -> Deferred[float]:
        """
        Send a Ping now and measure its round trip.

        :param data: the Ping payload, at most 125 bytes; a ``str`` is sent
            UTF-8 encoded; ``None`` (the default) picks a unique random one.
        :return: a ``Deferred`` that fires with the round-trip latency in
            seconds when the matching Pong (or a Pong for a later Ping)
            arrives, and fails with :class:`ConnectionClosed` if the
            connection closes first or is not open.  Cancelling it stops
            waiting for that Pong.
        :raises TypeError: ``data`` is not ``bytes``, ``str`` or ``None``.
        :raises ValueError: ``data`` is longer than 125 bytes.
        :raises PingInFlight: a Ping with the same payload is already waiting
            for its Pong.
        """
        payload = ping_payload(data)
        link = self._keepalive_link
        if link is None:
            return fail(ConnectionClosed(None, "the WebSocket connection is not open yet"))
        if self.state != self.STATE_OPEN or not link.heartbeat.accepts_pings:
            return fail(link.not_open())
        return send_application_ping(link, payload)

    # -- hooks for applications ---------------------------------------------

    def onLatency(self, latency: float) -> None:
        """
        Called with each measured round trip (seconds), keepalive or
        :meth:`ping`, after :attr:`latency` is updated.  Override to record
        it; the default does nothing.
        """

    def onKeepaliveTimeout(self, timeout: Timeout) -> None:
        """
        Called once when the heartbeat gives up on the peer, before the 1011
        Close frame goes out.  ``timeout`` says why (:class:`Cause`) and
        carries the timings that were logged.  Override to record it; the
        default does nothing (the warning is logged either way).
        """

    # -- Autobahn's dispatchers ---------------------------------------------

    def _onOpen(self) -> None:
        # ping() must work inside the application's onOpen, so the link
        # exists before it runs; the schedule starts after it, so that
        # settings it assigns there apply, and only if it kept the connection.
        link = self._keepalive_link = self._keepalive_new_link()
        link.heartbeat.open()
        try:
            super()._onOpen()  # type: ignore[misc]
        finally:
            if self.state == self.STATE_OPEN:
                self._keepalive_start(link)

    def dataReceived(self, data: bytes) -> None:
        # Autobahn's formats the fields of a debug line first, logged or not:
        # skipping that when nothing would be logged changes nothing else.
        if self._keepalive_link is not None and debug_logging_off(self):
            self._dataReceived(data)
        else:
            super().dataReceived(data)  # type: ignore[misc]

    def _dataReceived(self, data: bytes) -> None:
        link = self._keepalive_link
        if link is None:
            super()._dataReceived(data)  # type: ignore[misc]
            return
        # The time of the peer's last bytes, and when the frame it is in the
        # middle of began: evidence for a deadline verdict (a peer busy with a
        # frame it started before our Ping is alive) and the "idle" figure.
        now = link.rx_at = link.wheel.now()
        # A lone Pong is read as Autobahn would, without its general parser.
        if not read_lone_pong(self, data, self.factory.isServer):
            super()._dataReceived(data)  # type: ignore[misc]
        frame = getattr(self, "current_frame", None)
        if frame is not link.frame:
            link.frame = frame
            link.frame_at = now

    def _onMessage(self, payload: bytes, isBinary: bool) -> None:
        link = self._keepalive_link
        if (
            link is not None
            and not isBinary
            and link.config is not None
            and link.config.browser_heartbeat
            and payload.startswith(browser.RESERVED_PREFIX)
        ):
            reply = browser.heartbeat_reply(payload)
            # A heartbeat that crosses our Close gets no reply: the peer is
            # told the connection is closing by the Close itself.
            if reply is not None and self.state == self.STATE_OPEN:
                self.sendMessage(reply, False)
            return
        super()._onMessage(payload, isBinary)  # type: ignore[misc]

    def _onPing(self, payload: bytes) -> None:
        link = self._keepalive_link
        if link is not None and not link.admit_ping(payload):
            return
        self._keepalive_answer_ping(payload)

    def _onPong(self, payload: bytes) -> None:
        link = self._keepalive_link
        if link is not None:
            link.pong_received(payload)
        super()._onPong(payload)  # type: ignore[misc]

    def _onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        try:
            link = self._keepalive_link
            if link is not None:
                link.stop(ConnectionClosed(code, reason or "connection closed"))
        finally:
            super()._onClose(wasClean, code, reason)  # type: ignore[misc]

    def _connectionLost(self, reason: Any) -> None:
        try:
            super()._connectionLost(reason)  # type: ignore[misc]
        finally:
            # Normally _onClose has already stopped everything; this covers
            # Autobahn paths that skip it.
            link = self._keepalive_link
            if link is not None:
                link.stop(ConnectionClosed(1006, "connection lost"))

    # -- the adapter --------------------------------------------------------

    def _keepalive_answer_ping(self, payload: bytes) -> None:
        super()._onPing(payload)  # type: ignore[misc]
        link = self._keepalive_link
        if link is not None:
            link.pong_written()

    def _keepalive_resolve(self) -> KeepaliveConfig:
        return factory_record(self.factory).config_for(
            self.ping_interval,
            self.ping_timeout,
            self.close_timeout,
            self.first_ping_spread,
            self.browser_heartbeat,
        )

    def _keepalive_new_link(self) -> Link:
        wheel = factory_record(self.factory).connection_wheel(
            self.clock, getattr(self.factory, "reactor", None)
        )
        stats = getattr(self.factory, "keepalive_stats", None)
        # The wheel's own clock and time: one bound method per clock, not per
        # connection.
        return self._keepalive_link_class(self, wheel, stats)

    def _keepalive_start(self, link: Link) -> None:
        config = self._keepalive_resolve()
        if config.ping_interval is not None:
            disable_autoping(self)
        link.choose_framing()
        link.begin(config)
