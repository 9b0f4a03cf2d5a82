"""
:class:`KeepaliveProtocol`: the ``WebSocketProtocol`` Twisted talks to.  It
hands every event on to the application's protocol, after the connection's
:class:`WebLink <twisted_keepalive.web.link.WebLink>` has seen it -- so the
application's protocol needs no base class and no ``super()`` calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from ..core import browser
from . import hooks
from .link import WebLink
from .transport import KeepaliveTransport

if TYPE_CHECKING:
    from .factory import KeepaliveFactory

#: ``browser.RESERVED_PREFIX`` as text: Twisted hands over text as ``str``.
_RESERVED = browser.RESERVED_PREFIX.decode()

_log = Logger(namespace="twisted_keepalive")
_blind_warned = False


def _warn_blind() -> None:
    global _blind_warned
    _blind_warned = True
    _log.warn(
        "keepalive cannot see the peer's bytes arrive on this Twisted release: a peer "
        "in the middle of a large frame will be taken for a silent one",
        keepalive_event="blind",
    )


class KeepaliveProtocol:
    """
    The keepalive of one connection, wrapped around the application's
    protocol (:attr:`application`).  Attributes it does not have itself are
    the application's, so the object ``WebSocketClientEndpoint.connect()``
    returns can be used as the application's protocol.
    """

    __slots__ = ("_factory", "_link", "_request", "application", "transport")

    def __init__(self, application: Any, factory: KeepaliveFactory, request: Any) -> None:
        #: The application's protocol.
        self.application = application
        #: What the application got as its transport, once negotiation began.
        self.transport: KeepaliveTransport | None = None
        self._factory = factory
        self._request = request
        self._link: WebLink | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.application, name)

    # -- Twisted's events -------------------------------------------------------

    def negotiationStarted(self, transport: Any) -> None:
        """
        The opening handshake began on ``transport``, Twisted's WebSocket
        transport: set up the connection's keepalive and hand the
        application a :class:`KeepaliveTransport
        <twisted_keepalive.web.KeepaliveTransport>` around it.
        """
        factory = self._factory
        request, self._request = self._request, None
        server = request is not None
        wheel = factory.record.connection_wheel(factory.clock, factory.reactor)
        link = self._link = WebLink(
            self.application,
            transport,
            hooks.tcp_transport_of(transport),
            masked=not server,
            wheel=wheel,
            stats=factory.keepalive_stats,
        )
        link.config = factory.config
        holder = hooks.inbound_holder(transport, request)
        if holder is not None:
            hooks.observe_inbound(holder, link.received)
        elif not _blind_warned:
            _warn_blind()
        wrapped = self.transport = KeepaliveTransport(transport, link)
        self.application.negotiationStarted(wrapped)

    def negotiationFinished(self) -> None:
        """
        The opening handshake is over: the application's
        ``negotiationFinished`` runs (``ping()`` works inside it), then the
        first keepalive Ping is scheduled if the connection is still open.
        """
        link = self._link
        assert link is not None
        # ping() must work inside the application's negotiationFinished; the
        # schedule starts after it, and only if it kept the connection.
        link.heartbeat.open()
        try:
            self.application.negotiationFinished()
        finally:
            if link.is_open() and link.config is not None:
                link.begin(link.config)

    def textMessageReceived(self, message: str) -> None:
        """
        A text message from the peer, handed to the application -- except a
        ``keepalive.js`` heartbeat when ``browser_heartbeat`` is on, which is
        answered here instead.
        """
        link = self._link
        if (
            link is not None
            and message.startswith(_RESERVED)
            and link.config is not None
            and link.config.browser_heartbeat
        ):
            reply = browser.heartbeat_reply(message.encode())
            # A heartbeat that crosses our Close gets no reply: the Close
            # itself tells the page.
            if reply is not None and link.is_open() and self.transport is not None:
                self.transport.sendTextMessage(reply.decode())
            return
        self.application.textMessageReceived(message)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        """A bytes message from the peer, handed to the application."""
        self.application.bytesMessageReceived(data)

    def pongReceived(self, payload: bytes) -> None:
        """
        A Pong from the peer: the keepalive settles the Pings it answers
        (``latency``, ``ping()`` results), then the application gets it.
        """
        link = self._link
        if link is not None:
            # wsproto before 1.3 hands over a bytearray, and a Pong's payload
            # is looked up among the Pings in flight.
            link.pong_received(bytes(payload))
        self.application.pongReceived(payload)

    def connectionLost(self, reason: Failure) -> None:
        """
        The connection is gone: the keepalive cancels its timers and fails
        pending ``ping()`` results; the application's ``connectionLost`` is
        called in any case.
        """
        try:
            link = self._link
            if link is not None:
                link.stop(link.lost())
        finally:
            self.application.connectionLost(reason)

    def __repr__(self) -> str:
        return f"<KeepaliveProtocol around {self.application!r}>"
