"""
The Autobahn/Twisted adapter: :class:`KeepaliveMixin` translates Autobahn's
events into calls on a :class:`~twisted_keepalive._heartbeat.Heartbeat` and
carries out its verdicts: the connection's next deadline on the factory's
:class:`~twisted_keepalive._wheel.TimerWheel` (one exact ``DelayedCall`` on a
test clock), the keepalive Ping written as a ready-made frame, the rest through
Autobahn's framing.

It hooks Autobahn's internal dispatchers (``_onOpen``, ``_onPong``,
``_onClose``, ``_connectionLost``) rather than the public ``onOpen`` /
``onPong`` / ``onClose``, because most Autobahn protocols override those
without calling ``super()``; a mixin relying on them would silently do nothing.
"""

from __future__ import annotations

import fcntl
import random
import struct
import termios
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet import tcp as _tcp
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import Logger

from . import _browser
from ._config import (
    DEFAULT_BROWSER_HEARTBEAT,
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_FIRST_PING_SPREAD,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    SETTING_NAMES,
    KeepaliveConfig,
    validate_setting,
)
from ._errors import ConnectionClosed
from ._heartbeat import Evidence, Heartbeat, Timeout, Verdict
from ._stats import KeepaliveStats
from ._wheel import TimerWheel

__all__ = ["KeepaliveMixin", "set_keepalive_options"]

_log = Logger(namespace="twisted_keepalive")

#: Close code and reason of a keepalive timeout, as in ``websockets``.
TIMEOUT_CLOSE_CODE = 1011
TIMEOUT_CLOSE_REASON = "keepalive ping timeout"

_STATE_OPEN = WebSocketProtocol.STATE_OPEN

#: Bytes; while more than this waits in our write buffer, Pings from the peer
#: are not answered one by one (only the latest, once the buffer drains).
PONG_BACKLOG_LIMIT = 64 * 1024

#: Seconds; keepalive deadlines on a real reactor are rounded up to this grid
#: and served a slot at a time by one TimerWheel per factory.  At 4,000
#: connections pinging every second, per-connection deadlines woke the reactor
#: about 1,400 times a second; on a 20 ms grid at most 50, and a Ping costs no
#: push onto the reactor's timer heap.  A deadline is never early and at most
#: this much late.  Test clocks get exact per-connection deadlines.
TIMER_GRID = 0.02

#: The attribute of a factory that :func:`set_keepalive_options` fills.
_FACTORY_OPTIONS = "keepalive_options"


class _DelayedCall(Protocol):
    # The part of IDelayedCall used here, as a type mypy understands without
    # the zope plugin.
    def active(self) -> bool: ...
    def cancel(self) -> None: ...
    def reset(self, secondsFromNow: float) -> None: ...


class _Clock(Protocol):
    # The part of IReactorTime used here.
    def seconds(self) -> float: ...
    def callLater(self, delay: float, callable: Callable[[], object]) -> _DelayedCall: ...


class _Setting:
    """
    A keepalive setting on the mixin: validated the moment it is assigned on an
    instance (subclass attributes are validated by ``__init_subclass__``).

    Reading it on an instance gives the value in force for that instance:
    its own, else its factory's (:func:`set_keepalive_options`), else its
    class's.
    """

    def __init__(self, name: str, default: float | bool | None) -> None:
        self.name = name
        self.default = default
        self.slot = "_keepalive_own_" + name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self.default
        own = instance.__dict__
        if self.slot in own:
            return own[self.slot]
        factory_options = getattr(getattr(instance, "factory", None), _FACTORY_OPTIONS, None)
        if factory_options is not None and self.name in factory_options:
            return factory_options[self.name]
        return self.default

    def __set__(self, instance: object, value: object) -> None:
        instance.__dict__[self.slot] = validate_setting(self.name, value)

    def __delete__(self, instance: object) -> None:
        instance.__dict__.pop(self.slot, None)


def set_keepalive_options(factory: object, **options: float | bool | None) -> None:
    """
    Configure keepalive for every connection a factory builds, the way
    Autobahn's ``factory.setProtocolOptions(...)`` configures its protocols::

        factory = WebSocketServerFactory("ws://127.0.0.1:9000")
        factory.protocol = Chat
        set_keepalive_options(factory, ping_interval=10.0, ping_timeout=5.0)

    Only the settings given change; each is validated now.  A factory's
    settings override the protocol class's attributes, and an attribute set on
    one protocol instance overrides both.

    :param factory: an Autobahn WebSocket server or client factory.
    :param ping_interval: seconds between keepalive pings; ``None`` disables
        keepalive and heartbeat.  Default 20.0.
    :param ping_timeout: seconds to wait for a Pong; ``None`` disables the
        heartbeat only.  Default 20.0.
    :param close_timeout: seconds between the 1011 Close frame of a keepalive
        timeout and the abort of the TCP connection.  Default 10.0.
    :param first_ping_spread: fraction (0 to 1) of the first interval over
        which first Pings are spread at random.  Default 1.0.
    :param browser_heartbeat: answer the heartbeat messages of
        ``keepalive.js`` (and keep them from ``onMessage``).  Default False.
    :raises TypeError: an unknown setting or a value that is not a number.
    :raises ValueError: a value that is not a positive, finite number of
        seconds, or keepalive on a factory that already runs Autobahn's own
        ``autoPingInterval`` (the peer would get two pings per interval).
    """
    validated = {name: validate_setting(name, value) for name, value in options.items()}
    current: Mapping[str, float | bool | None] = getattr(factory, _FACTORY_OPTIONS, None) or {}
    merged = {**current, **validated}
    auto_ping = getattr(factory, "autoPingInterval", 0)
    if auto_ping and merged.get("ping_interval", DEFAULT_PING_INTERVAL) is not None:
        raise ValueError(
            f"factory already runs Autobahn's auto-ping (autoPingInterval={auto_ping!r}); "
            "turn it off with setProtocolOptions(autoPingInterval=0) to use keepalive, "
            "or pass ping_interval=None"
        )
    setattr(factory, _FACTORY_OPTIONS, MappingProxyType(merged))


class KeepaliveMixin:
    """
    Keepalive and heartbeat for an Autobahn Twisted WebSocket protocol.

    Put it first among the bases of a ``WebSocketServerProtocol`` or
    ``WebSocketClientProtocol`` subclass::

        class Chat(KeepaliveMixin, WebSocketServerProtocol):
            ping_interval = 20.0
            ping_timeout = 20.0

    After the opening handshake it sends a Ping every ``ping_interval``
    seconds (Ping to Ping, one keepalive Ping in flight at a time).  If no
    Pong comes back within ``ping_timeout`` seconds, it fails the connection
    with close code 1011 "keepalive ping timeout" and aborts the TCP
    connection ``close_timeout`` seconds later if it is still there.

    Settings (class attributes, instance attributes, or per factory through
    :func:`set_keepalive_options`), validated when assigned:

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
    :cvar clock: the ``IReactorTime`` that schedules the deadlines; ``None``
        (the default) uses the factory's reactor.  Inject a
        ``twisted.internet.task.Clock`` in tests.
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
        peer: str
        wasClean: bool
        wasNotCleanReason: str | None
        autoPingInterval: float
        autoPingTimeout: float
        autoPingPendingCall: Any
        closeHandshakeTimeoutCall: Any
        send_queue: Any
        trafficStats: Any

        def sendPing(self, payload: bytes | None = None) -> None: ...
        def sendMessage(self, payload: bytes, isBinary: bool = False) -> None: ...
        def sendCloseFrame(
            self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False
        ) -> None: ...

    else:
        ping_interval = _Setting("ping_interval", DEFAULT_PING_INTERVAL)
        ping_timeout = _Setting("ping_timeout", DEFAULT_PING_TIMEOUT)
        close_timeout = _Setting("close_timeout", DEFAULT_CLOSE_TIMEOUT)
        first_ping_spread = _Setting("first_ping_spread", DEFAULT_FIRST_PING_SPREAD)
        browser_heartbeat = _Setting("browser_heartbeat", DEFAULT_BROWSER_HEARTBEAT)

    clock: IReactorTime | None = None

    _keepalive_heartbeat: Heartbeat | None = None
    _keepalive_timer: _DelayedCall | None = None
    _keepalive_timer_at = 0.0
    _keepalive_wheel: TimerWheel | None = None
    _keepalive_slot: int | None = None
    _keepalive_abort: _DelayedCall | None = None
    _keepalive_waiters: dict[bytes, Deferred[float]] | None = None
    _keepalive_closed: ConnectionClosed | None = None
    _keepalive_clock: _Clock
    # Class-level so that bytes read before the handshake completes have a
    # clock; _keepalive_prepare() picks the real one.
    _keepalive_now: Callable[[], float] = time.monotonic
    _keepalive_config: KeepaliveConfig
    _keepalive_stats: KeepaliveStats | None = None
    _keepalive_rx_at = 0.0
    _keepalive_browser = False
    _keepalive_tx_mark = 0
    _keepalive_frame: Any = None
    _keepalive_frame_at = 0.0
    _keepalive_unanswered: bytes | None = None
    _keepalive_head: bytes | None = None
    _keepalive_masked = False
    _keepalive_socket: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass attribute like ``ping_interval = 5`` replaces the
        # descriptor; check it now (at import, not at the first ping) and put
        # a validating descriptor back so instance assignments stay checked.
        for name in SETTING_NAMES:
            value = cls.__dict__.get(name)
            if name in cls.__dict__ and not isinstance(value, _Setting):
                try:
                    checked = validate_setting(name, value)
                except (TypeError, ValueError) as e:
                    raise type(e)(f"{cls.__qualname__}.{e}") from None
                setattr(cls, name, _Setting(name, checked))

    # -- public API ---------------------------------------------------------

    @property
    def latency(self) -> float:
        """
        Seconds of the last keepalive or :meth:`ping` round trip, measured with
        a monotonic clock; 0.0 before the first Pong.
        """
        heartbeat = self._keepalive_heartbeat
        return 0.0 if heartbeat is None else heartbeat.latency

    @property
    def keepalive_timeout(self) -> Timeout | None:
        """
        Why the heartbeat failed this connection (a :class:`Timeout`), or
        ``None`` if it did not.
        """
        heartbeat = self._keepalive_heartbeat
        return None if heartbeat is None else heartbeat.timeout

    @property
    def keepalive_config(self) -> KeepaliveConfig:
        """The settings in force on this connection (resolved when it opened)."""
        try:
            return self._keepalive_config
        except AttributeError:
            return self._resolve_config()

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
        if data is None:
            payload = None
        elif isinstance(data, bytes):
            payload = data
        elif isinstance(data, str):
            payload = data.encode("utf-8")
        else:
            raise TypeError(f"ping data must be bytes, str or None, not {type(data).__name__}")
        if payload is not None and len(payload) > 125:
            raise ValueError(
                f"ping data must be at most 125 bytes (RFC 6455 control frame), not {len(payload)}"
            )
        heartbeat = self._keepalive_heartbeat
        if heartbeat is None or self.state != _STATE_OPEN:
            return fail(self._keepalive_not_open(heartbeat))
        if payload is None:
            payload = heartbeat.new_payload()
        heartbeat.ping_sent(payload, self._keepalive_now())
        waiters = self._keepalive_waiters
        if waiters is None:
            waiters = self._keepalive_waiters = {}

        def forget(_: Deferred[float]) -> None:
            heartbeat.forget(payload)
            waiters.pop(payload, None)

        waiter: Deferred[float] = Deferred(forget)
        waiters[payload] = waiter
        self.sendPing(payload)
        stats = self._keepalive_stats
        if stats is not None:
            stats.pings_sent += 1
        return waiter

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

    # -- Autobahn hooks -----------------------------------------------------

    def _onOpen(self) -> None:
        # ping() must work inside the application's onOpen, so the heartbeat
        # exists before it runs; the schedule starts after it, so that
        # settings it assigns there apply, and only if it kept the connection.
        self._keepalive_prepare()
        try:
            super()._onOpen()  # type: ignore[misc]
        finally:
            if self.state == _STATE_OPEN:
                self._keepalive_start()

    def _dataReceived(self, data: bytes) -> None:
        # The time of the peer's last bytes, and when the frame it is in the
        # middle of began: evidence for a deadline verdict (a peer busy with a
        # frame it started before our Ping is alive) and the "idle" figure.
        now = self._keepalive_rx_at = self._keepalive_now()
        super()._dataReceived(data)  # type: ignore[misc]
        frame = getattr(self, "current_frame", None)
        if frame is not self._keepalive_frame:
            self._keepalive_frame = frame
            self._keepalive_frame_at = now

    def _onMessage(self, payload: bytes, isBinary: bool) -> None:
        if (
            self._keepalive_browser
            and not isBinary
            and payload.startswith(_browser.RESERVED_PREFIX)
        ):
            reply = _browser.heartbeat_reply(payload)
            if reply is not None:
                self.sendMessage(reply, False)
            return
        super()._onMessage(payload, isBinary)  # type: ignore[misc]

    def _onPing(self, payload: bytes) -> None:
        backlog = _transport_backlog(self.transport)
        if backlog is not None and backlog > PONG_BACKLOG_LIMIT:
            # A peer that pings but does not read would have us queue Pongs
            # without end.  RFC 6455 5.5.3 lets us answer only the latest
            # Ping: keep it, and answer once our buffer has drained.
            self._keepalive_unanswered = payload
            return
        self._keepalive_unanswered = None
        super()._onPing(payload)  # type: ignore[misc]

    def _onPong(self, payload: bytes) -> None:
        heartbeat = self._keepalive_heartbeat
        if heartbeat is not None:
            pongs_before = heartbeat.pongs
            acknowledged = heartbeat.pong_received(payload, self._keepalive_now())
            if heartbeat.wake_at != self._keepalive_timer_at:
                self._keepalive_schedule(heartbeat)
            if acknowledged:
                self._keepalive_settle(acknowledged)
            if heartbeat.pongs != pongs_before:
                latency = heartbeat.latency
                stats = self._keepalive_stats
                if stats is not None:
                    stats.observe_latency(latency)
                self.onLatency(latency)
        super()._onPong(payload)  # type: ignore[misc]

    def _onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._keepalive_stop(ConnectionClosed(code, reason or "connection closed"))
        super()._onClose(wasClean, code, reason)  # type: ignore[misc]

    def _connectionLost(self, reason: Any) -> None:
        try:
            super()._connectionLost(reason)  # type: ignore[misc]
        finally:
            # Normally _onClose has already stopped everything; this covers
            # connections lost before the handshake and Autobahn paths that
            # skip _onClose.
            self._keepalive_stop(ConnectionClosed(1006, "connection lost"))

    # -- the adapter --------------------------------------------------------

    def _resolve_config(self) -> KeepaliveConfig:
        return KeepaliveConfig(
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            first_ping_spread=self.first_ping_spread,
            browser_heartbeat=self.browser_heartbeat,
        )

    def _keepalive_prepare(self) -> None:
        clock: Any = self.clock or getattr(self.factory, "reactor", None)
        if clock is None:
            from twisted.internet import reactor as clock
        self._keepalive_clock = clock
        # A real reactor's seconds() is wall-clock time, which jumps; latency
        # and deadlines are measured on the monotonic clock instead.  A test
        # clock is the only time there is.
        if IReactorCore.providedBy(clock):
            self._keepalive_now = time.monotonic
            # One wheel for all the factory's connections on this reactor.
            wheel = getattr(self.factory, "_keepalive_wheel", None)
            if wheel is None or wheel.clock is not clock:
                wheel = TimerWheel(clock, time.monotonic, TIMER_GRID)
                self.factory._keepalive_wheel = wheel
            self._keepalive_wheel = wheel
        else:
            self._keepalive_now = clock.seconds
            self._keepalive_wheel = None
        self._keepalive_rx_at = self._keepalive_now()
        self._keepalive_heartbeat = Heartbeat(None, None)
        stats = self._keepalive_stats = getattr(self.factory, "keepalive_stats", None)
        if stats is not None:
            stats.opened += 1

    def _keepalive_start(self) -> None:
        config = self._keepalive_config = self._resolve_config()
        self._keepalive_disable_autoping(config)
        heartbeat = self._keepalive_heartbeat
        assert heartbeat is not None
        self._keepalive_browser = config.browser_heartbeat
        self._keepalive_choose_framing()
        heartbeat.ping_interval = config.ping_interval
        heartbeat.ping_timeout = config.ping_timeout
        first_delay = None
        if config.ping_interval is not None and config.first_ping_spread:
            first_delay = config.ping_interval * (1.0 - config.first_ping_spread * random.random())
        heartbeat.start(self._keepalive_now(), first_delay)
        self._keepalive_schedule(heartbeat)

    def _keepalive_choose_framing(self) -> None:
        if getattr(self, "logFrames", False) or getattr(self, "logOctets", False):
            self._keepalive_head = None  # Autobahn logs every frame: let it.
            return
        # FIN + Ping, then the length (4) with the mask bit on the client side.
        self._keepalive_masked = not self.factory.isServer
        self._keepalive_head = b"\x89\x84" if self._keepalive_masked else b"\x89\x04"
        self._keepalive_socket = _direct_socket(self.transport)

    def _keepalive_disable_autoping(self, config: KeepaliveConfig) -> None:
        if config.ping_interval is None or not getattr(self, "autoPingInterval", 0):
            return
        # Two keepalives would double the pings and race to fail the
        # connection; ours has the timeout cause, the 1011 close and the
        # latency, so Autobahn's stands down.  Warn once per factory, not once
        # per connection.
        call = getattr(self, "autoPingPendingCall", None)
        if call is not None:
            call.cancel()
            self.autoPingPendingCall = None
        interval = self.autoPingInterval
        self.autoPingInterval = 0
        self.autoPingTimeout = 0
        if not getattr(self.factory, "_keepalive_autoping_warned", False):
            self.factory._keepalive_autoping_warned = True
            _log.warn(
                "Autobahn's autoPingInterval={auto_ping_interval} is set on the factory of "
                "{protocol}; KeepaliveMixin disabled it on these connections to avoid "
                "double pings. Set autoPingInterval=0 to silence this warning.",
                auto_ping_interval=interval,
                protocol=type(self).__qualname__,
            )

    def _keepalive_schedule(self, heartbeat: Heartbeat) -> None:
        wake_at = heartbeat.wake_at
        self._keepalive_timer_at = 0.0 if wake_at is None else wake_at
        wheel = self._keepalive_wheel
        if wheel is not None:
            slot = self._keepalive_slot
            if wake_at is None:
                if slot is not None:
                    wheel.remove(self, slot)
                    self._keepalive_slot = None
                return
            new = wheel.slot_of(wake_at)
            if slot is not None:
                if new == slot:
                    return
                # Moving is two dict operations: cheap enough for every Pong,
                # so a Ping is never more than one slot late.
                wheel.remove(self, slot)
            wheel.add(self, new)
            self._keepalive_slot = new
            return
        # A test clock: one exact DelayedCall.
        timer = self._keepalive_timer
        if wake_at is None:
            if timer is not None and timer.active():
                timer.cancel()
            self._keepalive_timer = None
            return
        delay = max(0.0, wake_at - self._keepalive_now())
        if timer is not None and timer.active():
            timer.reset(delay)
        else:
            self._keepalive_timer = self._keepalive_clock.callLater(delay, self._keepalive_wake)

    def _keepalive_wheel_fired(self) -> None:
        self._keepalive_slot = None
        self._keepalive_wake()

    def _keepalive_wake(self) -> None:
        self._keepalive_timer = None
        heartbeat = self._keepalive_heartbeat
        if heartbeat is None:
            return
        if self.state != _STATE_OPEN:
            # Closing: Autobahn's closing handshake (and our abort, if we
            # started it) decides from here.
            heartbeat.stop()
            return
        if self._keepalive_unanswered is not None:
            self._keepalive_answer_latest_ping()
        verdict = heartbeat.wake(self._keepalive_now())
        if verdict is Verdict.PING:
            self._keepalive_send(heartbeat)
        elif verdict is Verdict.RECHECK:
            # Let the reactor poll the socket once before judging: it runs
            # due timers before reading, so a Pong that arrived while it was
            # blocked has not been read yet.
            self._keepalive_timer_at = -1.0
            self._keepalive_timer = self._keepalive_clock.callLater(0, self._keepalive_judge)
            return
        self._keepalive_schedule(heartbeat)

    def _keepalive_answer_latest_ping(self) -> None:
        backlog = _transport_backlog(self.transport)
        if backlog is not None and backlog <= PONG_BACKLOG_LIMIT:
            payload, self._keepalive_unanswered = self._keepalive_unanswered, None
            super()._onPing(payload)  # type: ignore[misc]

    def _keepalive_send(self, heartbeat: Heartbeat) -> None:
        payload = heartbeat.keepalive_payload
        assert payload is not None
        transport = self.transport
        traffic = self.trafficStats
        before = traffic.outgoingOctetsWireLevel
        # Whether our Ping waits behind our own data (a slow reader) matters
        # only if the application wrote since the last Ping: an idle
        # connection skips the measurement and its system call.
        queued = _unsent(transport) if before != self._keepalive_tx_mark else 0
        head = self._keepalive_head
        if head is None or self.send_queue:
            # Autobahn's own framing: it logs frames or octets, or it holds
            # chopped writes our Ping must queue behind.
            self.sendPing(payload)
        else:
            # The keepalive Ping is always 4 bytes: build the frame here
            # rather than through sendPing() -> sendFrame() -> sendData(),
            # which cost more than the rest of the keepalive cycle together.
            if self._keepalive_masked:
                mask = random.getrandbits(32)
                masked = (int.from_bytes(payload, "big") ^ mask).to_bytes(4, "big")
                frame = head + mask.to_bytes(4, "big") + masked
            else:
                frame = head + payload
            sock = self._keepalive_socket
            if (
                sock is not None
                and not transport.TLS
                and not transport._tempDataLen
                and transport.offset == len(transport.dataBuffer)
                and transport.connected
                and not transport.disconnecting
            ):
                _send_past_buffer(transport, sock, frame)
            else:
                transport.write(frame)
            traffic.outgoingOctetsWireLevel = before + len(frame)
        self._keepalive_tx_mark = after = traffic.outgoingOctetsWireLevel
        if queued:
            # Remember how much had left when the Ping was queued, so that a
            # slow reader still draining our data is not taken for dead.
            heartbeat.queued_behind(after, before - queued)
        stats = self._keepalive_stats
        if stats is not None:
            stats.keepalive_ping_sent(heartbeat.keepalive_sent_at - heartbeat.ping_due_at)

    def _keepalive_judge(self) -> None:
        self._keepalive_timer = None
        heartbeat = self._keepalive_heartbeat
        if heartbeat is None or self.state != _STATE_OPEN:
            return
        queued = _unsent(self.transport)
        written = self.trafficStats.outgoingOctetsWireLevel
        frame = getattr(self, "current_frame", None)
        evidence = Evidence(
            received_at=self._keepalive_rx_at,
            mid_frame=frame is not None and frame is self._keepalive_frame,
            frame_began_at=self._keepalive_frame_at,
            delivered=None if queued is None else written - queued,
            queued=queued,
        )
        verdict = heartbeat.judge(self._keepalive_now(), evidence)
        if verdict is Verdict.TIMEOUT:
            assert heartbeat.timeout is not None
            self._keepalive_fail(heartbeat.timeout)
        else:
            self._keepalive_schedule(heartbeat)

    def _keepalive_fail(self, timeout: Timeout) -> None:
        config = self._keepalive_config
        _log.warn(
            "keepalive ping timeout: no pong from {peer} within {waited:.3f} s "
            "(cause {cause_name}; timer {lateness:.3f} s late; peer idle {idle:.3f} s; "
            "{queued} bytes queued outbound; last latency {latency:.3f} s); "
            "failing the connection with 1011",
            peer=self.peer,
            cause_name=timeout.cause.value,
            cause=timeout.cause,
            waited=timeout.waited,
            lateness=timeout.lateness,
            idle=timeout.idle,
            queued=timeout.queued,
            latency=timeout.latency,
            ping_interval=timeout.ping_interval,
            ping_timeout=timeout.ping_timeout,
            close_timeout=config.close_timeout,
            keepalive_event="timeout",
        )
        stats = self._keepalive_stats
        if stats is not None:
            stats.timeouts[timeout.cause] += 1
        closed = ConnectionClosed(TIMEOUT_CLOSE_CODE, TIMEOUT_CLOSE_REASON)
        self._keepalive_closed = closed
        self._keepalive_fail_waiters(closed)
        try:
            self.onKeepaliveTimeout(timeout)
        finally:
            # What Autobahn hands onClose if the connection ends without the
            # peer's Close: 1006 'connection was closed uncleanly ("keepalive
            # ping timeout")'.
            self.wasClean = False
            self.wasNotCleanReason = TIMEOUT_CLOSE_REASON
            if self.state == _STATE_OPEN:
                # Autobahn's public sendClose() refuses 1011 and its
                # _fail_connection() drops TCP without a Close frame
                # (failByDrop); sendCloseFrame() sends 1011 and starts the
                # closing handshake.
                self.sendCloseFrame(
                    code=TIMEOUT_CLOSE_CODE,
                    reasonUtf8=TIMEOUT_CLOSE_REASON.encode(),
                    isReply=False,
                )
                # Autobahn starts its own closing-handshake timer too, on
                # txaio's batched timer, which truncates deadlines to whole
                # seconds: it would cut a slow peer off anywhere from 0 to 1 s
                # in, whatever close_timeout says.  Ours is the bound.
                autobahn_timer = getattr(self, "closeHandshakeTimeoutCall", None)
                if autobahn_timer is not None:
                    autobahn_timer.cancel()
                    self.closeHandshakeTimeoutCall = None
            # A dead peer never answers the Close, and a full send buffer may
            # never let it out: the abort is what frees the connection.
            self._keepalive_abort = self._keepalive_clock.callLater(
                config.close_timeout, self._keepalive_abort_now
            )

    def _keepalive_abort_now(self) -> None:
        self._keepalive_abort = None
        _log.info(
            "keepalive: aborting the connection to {peer}: no closing handshake "
            "within {close_timeout} s",
            peer=self.peer,
            close_timeout=self._keepalive_config.close_timeout,
            keepalive_event="abort",
        )
        transport = self.transport
        if hasattr(transport, "abortConnection"):
            transport.abortConnection()
        else:
            transport.loseConnection()

    def _keepalive_not_open(self, heartbeat: Heartbeat | None) -> ConnectionClosed:
        closed = self._keepalive_closed
        if closed is not None:
            return ConnectionClosed(closed.code, closed.reason)
        if heartbeat is None:
            return ConnectionClosed(None, "the WebSocket connection is not open yet")
        return ConnectionClosed(None, "the WebSocket connection is closing")

    def _keepalive_settle(self, acknowledged: tuple[tuple[bytes, float], ...]) -> None:
        waiters = self._keepalive_waiters
        if not waiters:
            return
        for payload, latency in acknowledged:
            waiter = waiters.pop(payload, None)
            if waiter is not None:
                waiter.callback(latency)

    def _keepalive_fail_waiters(self, closed: ConnectionClosed) -> None:
        waiters = self._keepalive_waiters
        if not waiters:
            return
        self._keepalive_waiters = None
        for waiter in waiters.values():
            waiter.errback(ConnectionClosed(closed.code, closed.reason))

    def _keepalive_stop(self, closed: ConnectionClosed) -> None:
        if self._keepalive_closed is None:
            self._keepalive_closed = closed
        for name in ("_keepalive_timer", "_keepalive_abort"):
            call = getattr(self, name)
            if call is not None:
                if call.active():
                    call.cancel()
                setattr(self, name, None)
        slot = self._keepalive_slot
        if slot is not None and self._keepalive_wheel is not None:
            self._keepalive_wheel.remove(self, slot)
            self._keepalive_slot = None
        heartbeat = self._keepalive_heartbeat
        if heartbeat is not None:
            heartbeat.stop()
        stats = self._keepalive_stats
        if stats is not None:
            self._keepalive_stats = None
            stats.closed += 1
        self._keepalive_fail_waiters(self._keepalive_closed)


def _send_past_buffer(transport: Any, sock: Any, frame: bytes) -> None:
    """
    Write ``frame`` to the socket now, past Twisted's empty write buffer.

    ``transport.write()`` would buffer it, register the socket for writing
    with epoll, send it on the next reactor turn and unregister: two system
    calls more than the send itself, about a third of a Ping's cost.  Only
    called while Twisted's buffer is empty, so the order on the wire holds;
    whatever the kernel does not take goes through ``transport.write()``.
    """
    try:
        sent = sock.send(frame)
    except BlockingIOError:
        sent = 0
    except OSError:
        # Let Twisted meet the error on its own write and close as it does.
        sent = 0
    if sent < len(frame):
        transport.write(frame[sent:])


def _direct_socket(transport: Any) -> Any:
    """
    The socket of a plain Twisted TCP transport whose write buffer this module
    knows how to read, else ``None`` (then Pings go through ``write()``).
    """
    if not isinstance(transport, _tcp.Connection):
        return None
    for name in ("socket", "dataBuffer", "offset", "_tempDataLen", "TLS", "connected"):
        if not hasattr(transport, name):
            return None
    return transport.socket


def _transport_backlog(transport: Any) -> int | None:
    """
    Bytes written to a Twisted TCP transport that it has not yet handed to
    the kernel, or ``None`` when the transport does not say (TLS, unix, a
    future Twisted): reads Twisted's private buffer attributes, and only
    reads them.
    """
    temp = getattr(transport, "_tempDataLen", None)
    buffer = getattr(transport, "dataBuffer", None)
    offset = getattr(transport, "offset", None)
    if temp is None or buffer is None or offset is None:
        return None
    try:
        return len(buffer) - offset + temp  # type: ignore[no-any-return]
    except TypeError:
        return None


def _unsent(transport: Any) -> int | None:
    """
    Bytes we wrote that the peer has not acknowledged yet: Twisted's write
    buffer plus the kernel's send queue, or ``None`` when neither can be read.
    """
    backlog = _transport_backlog(transport)
    kernel = _kernel_unsent(transport)
    if backlog is None and kernel is None:
        return None
    return (backlog or 0) + (kernel or 0)


def _kernel_unsent(transport: Any) -> int | None:
    """Bytes in the kernel's send queue of the transport's socket (Linux), or ``None``."""
    try:
        handle = transport.getHandle()
        fileno = handle.fileno()
        return struct.unpack("i", fcntl.ioctl(fileno, termios.TIOCOUTQ, b"\0\0\0\0"))[0]  # type: ignore[no-any-return]
    except Exception:
        return None
