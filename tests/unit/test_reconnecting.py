"""
ReconnectingClient on a task.Clock: real Autobahn client protocols with the
mixin, over in-memory transports that an endpoint hands out one per attempt;
the test plays the server's side of every connection byte by byte.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent
from twisted.python.failure import Failure

from twisted_keepalive import FullJitterBackoff, KeepaliveMixin, ReconnectingClient

from .wire import CLOSE, PING, EchoClient, frame, parse_frames, result_of

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ClosingTransport(StringTransport):
    """Tells its protocol the connection is gone on the next reactor turn, as TCP does."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 9000))
        self.clock = clock
        self.protocol: Any = None
        self.aborted = False

    def unregisterProducer(self) -> None:
        self.producer = None

    def loseConnection(self) -> None:
        self._gone(ConnectionDone)

    def abortConnection(self) -> None:
        self.aborted = True
        self._gone(ConnectionAborted)

    def _gone(self, reason: type[Exception]) -> None:
        if self.connected:
            self.connected = False
            self.clock.callLater(0, self.protocol.connectionLost, Failure(reason()))


class Server:
    """The server's end of one attempt: what the client wrote, and what to answer."""

    def __init__(self, protocol: Any, transport: ClosingTransport) -> None:
        self.protocol = protocol
        self.transport = transport

    def serves(self, protocol: Any) -> bool:
        """Whether ``protocol`` (the application's) is this attempt's."""
        return protocol is not None and protocol.transport is self.transport

    def accept(self) -> None:
        request = self.transport.value()
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.transport.clear()
        self.protocol.dataReceived(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )

    def refuse_handshake(self) -> None:
        self.transport.clear()
        self.protocol.dataReceived(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
        )

    def send(self, opcode: int, payload: bytes = b"") -> None:
        self.protocol.dataReceived(frame(opcode, payload, masked=False))

    def frames(self) -> list[tuple[int, bytes]]:
        written = parse_frames(self.transport.value())
        self.transport.clear()
        return written

    def drop(self) -> None:
        self.transport.loseConnection()


class Endpoint:
    """Connects every attempt at once, or refuses it while ``refusing``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.refusing = False
        self.attempted_at: list[float] = []
        self.servers: list[Server] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempted_at.append(self.clock.seconds())
        if self.refusing:
            return fail(ConnectionRefusedError("refused"))
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9000))
        transport = ClosingTransport(self.clock)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        self.servers.append(Server(protocol, transport))
        return succeed(protocol)

    @property
    def latest(self) -> Server:
        return self.servers[-1]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def endpoint(clock: Clock) -> Endpoint:
    return Endpoint(clock)


def make_client(clock: Clock, endpoint: Endpoint, **options: Any) -> ReconnectingClient:
    protocol = type("Client", (EchoClient,), {"clock": clock})
    factory = WebSocketClientFactory("ws://127.0.0.1:9000")
    factory.protocol = protocol
    # Autobahn's own handshake timers run on the global reactor: off.
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
    options.setdefault("random", lambda: 0.5)
    return ReconnectingClient(endpoint, factory, clock=clock, **options)


def waits(times: list[float]) -> list[float]:
    """Seconds between consecutive attempts."""
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def reconnects(logged: list[LogEvent]) -> list[LogEvent]:
    return [e for e in logged if e.get("keepalive_event") == "reconnect"]


# -- the backoff --------------------------------------------------------------


def test_backoff_ceiling_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    backoff = FullJitterBackoff(initial_delay=0.5, max_delay=5.0, factor=2.0)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_backoff_delay_is_the_ceiling_scaled_by_the_jitter() -> None:
    assert FullJitterBackoff(1.0, 8.0, random=lambda: 0.25)(3) == 1.0
    assert FullJitterBackoff(1.0, 8.0, random=lambda: 0.0)(3) == 0.0


@given(
    initial=st.floats(0.001, 100),
    cap_over_initial=st.floats(1, 1000),
    factor=st.floats(1, 10),
    attempt=st.integers(0, 10**6),
    jitter=st.floats(0, 1, exclude_max=True),
)
def test_backoff_stays_within_zero_and_the_cap_and_never_shrinks(
    initial: float, cap_over_initial: float, factor: float, attempt: int, jitter: float
) -> None:
    backoff = FullJitterBackoff(initial, initial * cap_over_initial, factor, random=lambda: jitter)
    assert 0 <= backoff(attempt) <= backoff.max_delay
    assert backoff.ceiling(attempt) <= backoff.ceiling(attempt + 1) <= backoff.max_delay


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"initial_delay": "1"}, TypeError, "initial_delay must be a number"),
        ({"max_delay": True}, TypeError, "max_delay must be a number"),
        ({"initial_delay": 0}, ValueError, "initial_delay must be positive"),
        ({"max_delay": float("inf")}, ValueError, "max_delay must be positive and finite"),
        ({"factor": float("nan")}, ValueError, "factor must be positive and finite"),
        ({"initial_delay": 5.0, "max_delay": 1.0}, ValueError, "below initial_delay"),
        ({"factor": 0.5}, ValueError, "factor must be at least 1"),
    ],
)
def test_bad_backoff_settings_name_the_problem(
    clock: Clock, endpoint: Endpoint, options: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        make_client(clock, endpoint, **options)


def test_a_protocol_without_the_mixin_is_refused(endpoint: Endpoint) -> None:
    factory = WebSocketClientFactory("ws://127.0.0.1:9000")
    factory.protocol = WebSocketClientProtocol
    with pytest.raises(TypeError, match="not a KeepaliveMixin subclass"):
        ReconnectingClient(endpoint, factory)  # type: ignore[arg-type]


# -- reconnecting ---------------------------------------------------------------


def test_refused_attempts_back_off_exponentially_up_to_the_cap(
    clock: Clock, endpoint: Endpoint, logged: list[LogEvent]
) -> None:
    endpoint.refusing = True
    client = make_client(clock, endpoint, initial_delay=1.0, max_delay=4.0)
    client.startService()
    clock.pump([0.25] * 100)
    # random() is 0.5: half of each ceiling, 1, 2, 4, 4, ... seconds.
    assert waits(endpoint.attempted_at)[:5] == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert client.attempts == len(endpoint.attempted_at)
    assert reconnects(logged)[0]["why"].startswith("connecting failed: Connection was refused")


def test_a_refused_handshake_counts_as_a_failed_attempt(clock: Clock, endpoint: Endpoint) -> None:
    # A balancer with no backend up accepts TCP and answers 503: ClientService
    # alone would call each of those a success and never back off.
    client = make_client(clock, endpoint, initial_delay=1.0, max_delay=60.0)
    client.startService()
    refused = 0
    while len(endpoint.servers) < 5:
        if refused < len(endpoint.servers):
            endpoint.latest.refuse_handshake()
            refused += 1
            clock.advance(0)  # the TCP close
        clock.advance(0.25)
    assert waits(endpoint.attempted_at) == [0.5, 1.0, 2.0, 4.0]
    assert client.attempts == 5


def test_an_open_connection_resets_the_backoff_and_is_handed_to_waiters(
    clock: Clock, endpoint: Endpoint
) -> None:
    endpoint.refusing = True
    client = make_client(clock, endpoint)
    opened = client.whenOpen()
    client.startService()
    clock.pump([1.0] * 10)
    endpoint.refusing = False
    clock.advance(30)
    assert not opened.called  # TCP is up, the handshake is not
    endpoint.latest.accept()
    assert endpoint.latest.serves(result_of(opened))
    assert endpoint.latest.serves(client.protocol)
    assert client.attempts == 0
    assert result_of(client.whenOpen()) is client.protocol


def test_a_keepalive_timeout_leads_to_a_new_connection(
    clock: Clock, endpoint: Endpoint, logged: list[LogEvent]
) -> None:
    client = make_client(clock, endpoint, initial_delay=1.0)
    client.startService()
    endpoint.latest.accept()
    first = endpoint.latest
    clock.advance(1.0)  # the keepalive Ping (interval 1 s) ...
    assert [op for op, _ in first.frames()] == [PING]
    clock.advance(0.5)  # ... gets no Pong within 0.5 s
    clock.advance(0)
    assert (CLOSE, b"\x03\xf3keepalive ping timeout") in first.frames()
    clock.advance(2.0)  # the close timeout aborts TCP
    assert first.transport.aborted
    clock.advance(0)
    assert client.protocol is None
    clock.pump([0.1] * 10)  # the retry waits up to 1 s
    assert len(endpoint.servers) == 2
    endpoint.latest.accept()
    assert endpoint.latest.serves(client.protocol)
    assert reconnects(logged)[-1]["why"] == "keepalive timeout (peer_silent)"


def test_a_draining_server_close_leads_to_a_new_connection(
    clock: Clock, endpoint: Endpoint, logged: list[LogEvent]
) -> None:
    client = make_client(clock, endpoint, initial_delay=1.0)
    client.startService()
    endpoint.latest.accept()
    first = endpoint.latest
    first.send(CLOSE, b"\x03\xe9server draining")  # 1001
    assert [op for op, _ in first.frames()] == [CLOSE]  # the reply
    first.drop()
    clock.pump([0.1] * 10)
    assert len(endpoint.servers) == 2
    assert reconnects(logged)[-1]["why"] == "the server closed with 1001 (server draining)"


def test_the_application_still_gets_the_protocol_from_is_closed(
    clock: Clock, endpoint: Endpoint
) -> None:
    client = make_client(clock, endpoint)
    client.startService()
    endpoint.latest.accept()
    protocol = client.protocol
    closed = protocol.is_closed
    endpoint.latest.drop()
    clock.advance(0)
    assert result_of(closed) is protocol


# -- stopping -------------------------------------------------------------------


def test_stopping_sends_close_1000_waits_for_the_reply_and_stops_reconnecting(
    clock: Clock, endpoint: Endpoint
) -> None:
    client = make_client(clock, endpoint)
    client.startService()
    endpoint.latest.accept()
    server = endpoint.latest
    stopped = client.stopService()
    assert server.frames() == [(CLOSE, b"\x03\xe8")]
    assert not stopped.called  # waiting for the closing handshake
    server.send(CLOSE, b"\x03\xe8")
    server.drop()  # a server closes TCP after the closing handshake
    clock.advance(0)
    assert result_of(stopped) is None
    assert not server.transport.aborted
    clock.advance(3600)
    assert len(endpoint.servers) == 1


def test_stopping_drops_tcp_after_the_close_timeout_without_a_reply(
    clock: Clock, endpoint: Endpoint
) -> None:
    client = make_client(clock, endpoint)
    client.startService()
    endpoint.latest.accept()
    stopped = client.stopService()
    clock.advance(1.9)
    assert not stopped.called
    clock.advance(0.1)  # EchoClient's close_timeout is 2 s
    clock.advance(0)
    assert result_of(stopped) is None
    clock.advance(3600)
    assert len(endpoint.servers) == 1


def test_stopping_while_waiting_cancels_the_retry_and_the_waiters(
    clock: Clock, endpoint: Endpoint
) -> None:
    endpoint.refusing = True
    client = make_client(clock, endpoint)
    client.startService()
    opened = client.whenOpen()
    assert result_of(client.stopService()) is None
    assert isinstance(result_of(opened).value, CancelledError)
    clock.advance(3600)
    assert len(endpoint.attempted_at) == 1


def test_stopping_from_inside_a_when_open_callback(clock: Clock, endpoint: Endpoint) -> None:
    client = make_client(clock, endpoint)
    stops: list[Deferred[None]] = []
    client.whenOpen().addCallback(lambda _: stops.append(client.stopService()))
    client.startService()
    endpoint.latest.accept()
    server = endpoint.latest
    assert server.frames() == [(CLOSE, b"\x03\xe8")]
    server.drop()
    clock.advance(0)
    assert result_of(stops[0]) is None
    clock.advance(3600)
    assert len(endpoint.servers) == 1


def test_a_cancelled_waiter_is_forgotten(clock: Clock, endpoint: Endpoint) -> None:
    client = make_client(clock, endpoint)
    client.startService()
    waiter = client.whenOpen()
    waiter.cancel()
    waiter.addErrback(lambda f: f.trap(CancelledError))
    endpoint.latest.accept()  # must not fire the cancelled Deferred again
    assert endpoint.latest.serves(client.protocol)


def test_mixin_is_required_to_be_first_so_the_client_inherits_the_check() -> None:
    # The client's own check relies on the mixin's: a protocol with the mixin
    # second never gets as far as the factory.
    with pytest.raises(TypeError, match="put the mixin first"):
        type("Wrong", (WebSocketClientProtocol, KeepaliveMixin), {})


def test_a_close_reply_after_the_close_timeout_changes_nothing(
    clock: Clock, endpoint: Endpoint, logged: list[LogEvent]
) -> None:
    client = make_client(clock, endpoint)
    client.startService()
    endpoint.latest.accept()
    server, protocol = endpoint.latest, client.protocol
    stopped = client.stopService()
    clock.advance(2.0)  # the close timeout: TCP is dropped ...
    server.send(CLOSE, b"\x03\xe8")  # ... as the late reply arrives
    clock.advance(0)
    assert result_of(stopped) is None
    # Stopping twice would have broken the application's own is_closed.
    assert result_of(protocol.is_closed) is protocol
    assert [e for e in logged if "log_failure" in e] == []
    clock.advance(3600)
    assert len(endpoint.servers) == 1


def test_stopping_twice_waits_for_the_same_end(clock: Clock, endpoint: Endpoint) -> None:
    client = make_client(clock, endpoint)
    client.startService()
    endpoint.latest.accept()
    first, second = client.stopService(), client.stopService()
    assert endpoint.latest.frames() == [(CLOSE, b"\x03\xe8")]  # one Close, not two
    endpoint.latest.send(CLOSE, b"\x03\xe8")
    endpoint.latest.drop()
    clock.advance(0)
    assert result_of(first) is None
    assert result_of(second) is None


def test_a_closing_connection_is_not_handed_out(clock: Clock, endpoint: Endpoint) -> None:
    client = make_client(clock, endpoint)
    client.startService()
    endpoint.latest.accept()
    endpoint.latest.send(CLOSE, b"\x03\xe9")  # the server begins to close
    assert client.protocol is None
    waiter = client.whenOpen()
    assert not waiter.called  # the next connection, not this one
    endpoint.latest.drop()
    clock.pump([0.1] * 10)
    endpoint.latest.accept()
    assert len(endpoint.servers) == 2
    assert endpoint.latest.serves(result_of(waiter))


def test_a_stopped_client_can_start_again(clock: Clock, endpoint: Endpoint) -> None:
    client = make_client(clock, endpoint)
    client.startService()
    endpoint.latest.accept()
    stopped = client.stopService()
    endpoint.latest.send(CLOSE, b"\x03\xe8")
    endpoint.latest.drop()
    clock.advance(0)
    assert result_of(stopped) is None
    client.startService()
    assert len(endpoint.servers) == 2
    endpoint.latest.accept()
    assert endpoint.latest.serves(client.protocol)
