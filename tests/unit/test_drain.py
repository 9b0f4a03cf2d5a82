"""
The drain of ``twistd wskeepalive`` on a ``task.Clock``: readiness first,
then the grace, then the ports, then the 1001s spread evenly, then the
aborts; a hurry skips what is left of the waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from twisted_keepalive.server.shutdown import WebSocketService
from twisted_keepalive.server.tracking import ServerFactory
from twisted_keepalive.serving import ListeningService


@dataclass(eq=False)
class FakeConnection:
    """What the drain calls on a connection, with the clock's time of each call."""

    factory: ServerFactory
    clock: Clock
    answers_close: bool = True
    told: list[float] = field(default_factory=list)
    aborted: list[float] = field(default_factory=list)

    def going_away(self) -> None:
        if self.told:
            return  # a real connection sends its 1001 once, from OPEN only
        self.told.append(self.clock.seconds())
        if self.answers_close:
            # The peer answers within a tenth of a second.
            self.clock.callLater(0.1, self.factory.connection_lost, self)

    def abort(self) -> None:
        self.aborted.append(self.clock.seconds())
        self.factory.connection_lost(self)


class FakeEndpoint:
    def __init__(self) -> None:
        self.port = FakePort()

    def listen(self, factory: object) -> Deferred[FakePort]:
        return succeed(self.port)


class FakePort:
    listening = True

    def stopListening(self) -> None:
        self.listening = False


def served(
    count: int, *, grace: float = 0.0, spread: float = 0.0, close_timeout: float = 10.0
) -> tuple[Clock, WebSocketService, list[FakeConnection], FakePort]:
    clock = Clock()
    factory = ServerFactory(None, clock)
    service = WebSocketService(
        factory, clock, close_timeout=close_timeout, drain_grace=grace, drain_spread=spread
    )
    endpoint = FakeEndpoint()
    service.add_listener(ListeningService(endpoint, object()))
    service.startService()
    connections = [FakeConnection(factory, clock) for _ in range(count)]
    factory.connections.update(connections)  # type: ignore[arg-type]
    return clock, service, connections, endpoint.port


def run_timers(clock: Clock, until: float) -> None:
    """Advance to each timer's due time in turn (exactly), up to ``until``."""
    while True:
        due = [call.getTime() for call in clock.getDelayedCalls()]
        if not due or min(due) > until:
            clock.advance(max(0.0, until - clock.seconds()))
            return
        clock.advance(min(due) - clock.seconds())


def test_readiness_turns_at_once_and_the_ports_stay_open_through_the_grace() -> None:
    clock, service, connections, port = served(3, grace=5.0, spread=0.0)
    service.drain()
    assert not service.ready.ready and service.ready.reason == "draining"
    clock.advance(4.9)
    assert port.listening
    assert not any(c.told for c in connections)
    clock.advance(0.1)
    assert not port.listening
    assert all(c.told == [5.0] for c in connections)


def test_the_1001s_are_spread_evenly_over_the_spread() -> None:
    clock, service, connections, _ = served(10, spread=4.0)
    done = service.drain()
    run_timers(clock, until=5.0)
    told = sorted(c.told[0] for c in connections)
    # Connection i of 10 goes at i * 0.4 s: the first at once, the last
    # one slot before the end of the spread.
    assert told == pytest.approx([i * 0.4 for i in range(10)], abs=1e-9)
    assert done.called


def test_a_large_drain_goes_in_batches_at_a_steady_rate() -> None:
    clock, service, connections, _ = served(2000, spread=2.0)
    service.drain()
    per_tenth = [0] * 20
    for tenth in range(25):
        before = sum(bool(c.told) for c in connections)
        clock.advance(0.1)
        if tenth < 20:
            per_tenth[tenth] = sum(bool(c.told) for c in connections) - before
    assert sum(bool(c.told) for c in connections) == 2000
    # 100 per tenth of a second, give or take one batch of ten milliseconds.
    assert max(per_tenth) <= 111 and min(per_tenth[:-1]) >= 89, per_tenth


def test_hurry_skips_the_rest_of_the_grace_and_the_spread() -> None:
    clock, service, connections, port = served(6, grace=60.0, spread=60.0)
    service.drain()
    clock.advance(1.0)
    service.hurry()
    assert not port.listening
    assert all(c.told == [1.0] for c in connections)


def test_hurry_during_the_spread_sends_the_rest_at_once() -> None:
    clock, service, connections, _ = served(6, spread=6.0)
    service.drain()
    clock.advance(2.5)
    assert sum(bool(c.told) for c in connections) == 3
    service.hurry()
    assert all(c.told for c in connections)


def test_connections_still_open_after_the_close_timeout_are_aborted() -> None:
    clock, service, connections, _ = served(3, close_timeout=2.0)
    connections[1].answers_close = False
    done = service.drain()
    clock.advance(1.9)
    assert not connections[1].aborted and not done.called
    clock.advance(0.1)
    assert connections[1].aborted == [2.0]
    assert not connections[0].aborted
    assert done.called


def test_a_connection_gone_before_its_turn_is_not_told() -> None:
    clock, service, connections, _ = served(4, spread=4.0)
    service.drain()
    clock.advance(0.5)
    late = next(c for c in connections if not c.told)
    service.factory.connection_lost(late)  # type: ignore[arg-type]
    for _ in range(50):
        clock.advance(0.1)
    assert late.told == []


def test_a_connection_that_opened_as_the_ports_closed_is_told_too() -> None:
    clock, service, _connections, _ = served(2, spread=1.0)
    service.drain()
    # A handshake under way when the ports closed completes during the spread.
    newcomer = FakeConnection(service.factory, clock)
    service.factory.connections.add(newcomer)  # type: ignore[arg-type]
    for _ in range(20):
        clock.advance(0.1)
    assert newcomer.told


def test_drain_twice_is_one_drain_and_stop_service_joins_it() -> None:
    clock, service, connections, _ = served(2, spread=1.0)
    first, second = service.drain(), service.drain(grace=False)
    stopped = service.stopService()
    for _ in range(20):
        clock.advance(0.1)
    assert first.called and second.called and stopped.called
    assert all(len(c.told) == 1 for c in connections)
    assert service.drain().called  # after the drain: fires at once


def test_drain_without_grace_closes_the_ports_at_once() -> None:
    _clock, service, _, port = served(1, grace=30.0)
    service.drain(grace=False)
    assert not port.listening


def test_no_connections_drains_at_once() -> None:
    _clock, service, _, port = served(0, grace=0.0, spread=5.0)
    assert service.drain().called
    assert not port.listening


def test_the_drain_waits_for_handshakes_under_way_but_not_for_ever() -> None:
    clock = Clock()
    factory = ServerFactory(None, clock)
    under_way = [3]
    service = WebSocketService(
        factory, clock, close_timeout=10.0, handshakes_under_way=lambda: under_way[0]
    )
    service.startService()
    done = service.drain()
    newcomer = FakeConnection(factory, clock)
    run_timers(clock, until=0.5)
    assert not done.called
    # One handshake completes: a connection opens, and is told with the rest.
    under_way[0] = 1
    factory.connections.add(newcomer)  # type: ignore[arg-type]
    run_timers(clock, until=5.0)
    # The last one never completes: the drain gives up on it after the bound.
    assert newcomer.told and 2.0 <= newcomer.told[0] <= 2.1
    assert done.called
