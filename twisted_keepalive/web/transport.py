"""
The transport the application's protocol gets in ``negotiationStarted``:
Twisted's WebSocket transport, and the keepalive's ``latency`` and
``ping()`` beside it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IPushProducer
from wsproto.utilities import LocalProtocolError

from ..core.config import KeepaliveConfig
from ..core.errors import ConnectionClosed
from ..core.phase import Phase
from ..core.verdict import Timeout
from ..glue.pings import ping_payload, send_application_ping
from .link import WebLink


class KeepaliveTransport:
    """
    A ``twisted.web.websocket.WebSocketTransport`` with keepalive.

    Everything Twisted's transport offers works as before
    (``sendTextMessage``, ``sendBytesMessage``, ``loseConnection``,
    ``attachProducer``, ``detachProducer``; other attributes are Twisted's
    transport's), with these differences:

    - :meth:`ping` returns a ``Deferred`` that fires with the round trip;
    - :attr:`latency`, :attr:`keepalive_timeout` and
      :attr:`keepalive_config` say what the keepalive measured and decided;
    - :attr:`peer_close_code` and :attr:`peer_close_reason` say what the
      peer's Close frame said (Twisted tells the application neither);
    - :meth:`loseConnection` aborts the TCP connection ``close_timeout``
      seconds later if the peer never takes the Close, and closing twice
      does nothing.
    """

    __slots__ = ("_link", "_wire")

    def __init__(self, wire: Any, link: WebLink) -> None:
        self._wire = wire
        self._link = link

    # -- messages -----------------------------------------------------------

    def sendTextMessage(self, text: str) -> None:
        """Send a text message (as Twisted's transport does)."""
        self._wire.sendTextMessage(text)
        self._link.count_message(len(text) if text.isascii() else len(text.encode()))

    def sendBytesMessage(self, data: bytes) -> None:
        """Send a bytes message (as Twisted's transport does)."""
        self._wire.sendBytesMessage(data)
        self._link.count_message(len(data))

    def loseConnection(self, code: int = 1000, reason: str = "") -> None:
        """
        Send a Close frame with ``code`` and ``reason`` and close the TCP
        connection once it has left; abort it ``close_timeout`` seconds
        later if it has not.  Closing again does nothing.
        """
        self._link.local_close(code, reason)

    def attachProducer(self, producer: IPushProducer) -> None:
        """Register a streaming producer (as Twisted's transport does)."""
        self._wire.attachProducer(producer)

    def detachProducer(self) -> None:
        """Unregister the producer (as Twisted's transport does)."""
        self._wire.detachProducer()

    def __getattr__(self, name: str) -> Any:
        # Anything else Twisted's transport has (its byte-stream
        # ``transport``, for one) is its to answer.
        return getattr(self._wire, name)

    # -- the keepalive --------------------------------------------------------

    def ping(self, payload: bytes | str | None = None) -> Deferred[float]:
        """
        Send a Ping now and measure its round trip.

        :param payload: at most 125 bytes; a ``str`` is sent UTF-8 encoded;
            ``None`` (the default) picks a unique random one, so that calls
            without a payload never collide.
        :return: a ``Deferred`` that fires with the round trip in seconds when
            the matching Pong (or a Pong for a later Ping) arrives, and fails
            with :class:`ConnectionClosed <twisted_keepalive.ConnectionClosed>`
            if the connection closes first or is not open.  Cancelling it
            stops waiting for that Pong.
        :raises TypeError: ``payload`` is not ``bytes``, ``str`` or ``None``.
        :raises ValueError: ``payload`` is longer than 125 bytes.
        :raises PingInFlight: a Ping with the same payload is already waiting
            for its Pong.
        """
        data = ping_payload(payload)
        link = self._link
        heartbeat = link.heartbeat
        if heartbeat.phase is Phase.NEW:
            return self._ping_before_finished(data)
        if not heartbeat.accepts_pings or not link.is_open():
            return fail(link.not_open())
        return send_application_ping(link, data)

    def _ping_before_finished(self, data: bytes | None) -> Deferred[float]:
        link = self._link
        # A client's connect() fires before negotiationFinished() is called,
        # and the code awaiting it may ping at once: if Twisted accepts the
        # Ping, the handshake is over.  A server writes its 101 response
        # after negotiationStarted(): nothing may go out before it.
        if link.masked and not link.closing:
            heartbeat = link.heartbeat
            payload = heartbeat.new_payload() if data is None else data
            try:
                link.send_ping(payload)
            except LocalProtocolError:
                pass
            else:
                heartbeat.open()
                return send_application_ping(link, payload, sent=True)
        return fail(ConnectionClosed(None, "the WebSocket connection is not open yet"))

    @property
    def latency(self) -> float:
        """
        Seconds of the last keepalive or :meth:`ping` round trip, measured on
        the monotonic clock; 0.0 before the first Pong.
        """
        return self._link.heartbeat.latency

    @property
    def keepalive_timeout(self) -> Timeout | None:
        """Why the heartbeat failed this connection, or ``None`` if it did not."""
        return self._link.heartbeat.timeout

    @property
    def peer_close_code(self) -> int | None:
        """
        The code of the peer's Close frame once it has arrived; ``None``
        before, and for a Close without one.
        """
        return self._link.frames.close_code

    @property
    def peer_close_reason(self) -> str | None:
        """
        The reason of the peer's Close frame (``""`` if it gave none) once
        the whole frame has arrived; ``None`` before.
        """
        return self._link.frames.close_reason

    @property
    def keepalive_config(self) -> KeepaliveConfig | None:
        """The settings in force on this connection, once it is open."""
        return self._link.config

    def __repr__(self) -> str:
        return f"<KeepaliveTransport on {self._wire!r}>"
