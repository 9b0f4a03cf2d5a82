"""
The server's accept pacing (:mod:`twisted_keepalive.server.accepting`): a
storm waits in the kernel's queue while a few hundred handshakes are under
way, clients that say nothing cannot keep the door shut, and a port that
stopped listening stays closed.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet import reactor, tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock

from twisted_keepalive.server.accepting import ACCEPTS_PER_TURN, AcceptPacer, cap_accepts_per_turn


class TurnClock(Clock):
    """A ``Clock`` on which a call for "now" waits for the next turn, as on the reactor."""

    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> Any:
        return super().callLater(delay or 1e-9, f, *args, **kw)

    def turn(self) -> None:
        self.advance(1e-9)


class FakePort:
    """What the pacer uses of a listening port: reading on and off."""

    def __init__(self) -> None:
        self.reading = True
        self.connected = True

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


def paced(most: int = 3) -> tuple[AcceptPacer, TurnClock, list[FakePort]]:
    clock = TurnClock()
    pacer = AcceptPacer(clock, most_pending=most)
    ports = [FakePort(), FakePort()]
    for port in ports:
        pacer.add_port(port)
    return pacer, clock, ports


def test_accepting_pauses_at_the_limit_and_resumes_as_a_handshake_ends() -> None:
    pacer, _clock, ports = paced(most=3)
    connections = [object() for _ in range(3)]
    for connection in connections[:2]:
        pacer.accepted(connection)
    assert all(port.reading for port in ports)
    pacer.accepted(connections[2])
    assert not any(port.reading for port in ports), "every port pauses"
    pacer.finished(connections[0])
    assert all(port.reading for port in ports)
    assert pacer.pauses == 1


def test_clients_that_say_nothing_hold_the_door_shut_for_two_turns_only() -> None:
    pacer, clock, ports = paced(most=3)
    for _ in range(3):
        pacer.accepted(object())  # and they never send their handshake
    clock.turn()  # the turn whose I/O reads what they sent: nothing
    assert not ports[0].reading
    clock.turn()
    assert ports[0].reading and not pacer.paused
    # They no longer count: the next accepts start from zero.
    pacer.accepted(object())
    assert ports[0].reading


def test_an_earlier_pause_does_not_end_a_later_one_early() -> None:
    pacer, clock, ports = paced(most=2)
    first = [object(), object()]
    for connection in first:
        pacer.accepted(connection)
    clock.turn()  # the first pause is one turn old
    pacer.finished(first[0])  # resumed
    pacer.accepted(object())  # paused again
    assert not ports[0].reading
    clock.turn()  # would be the first pause's second turn
    assert not ports[0].reading, "the second pause has had one turn only"
    clock.turn()
    assert ports[0].reading


def test_a_port_that_stopped_listening_is_not_read_again() -> None:
    pacer, _clock, ports = paced(most=1)
    connection = object()
    pacer.accepted(connection)
    ports[0].connected = False  # a drain closed it meanwhile
    pacer.finished(connection)
    assert not ports[0].reading and ports[1].reading


def test_a_port_told_to_stop_listening_is_not_read_before_it_closes() -> None:
    # tcp.Port.stopListening() closes the socket a turn later; meanwhile it
    # is "disconnecting" and still "connected".
    pacer, _clock, ports = paced(most=1)
    connection = object()
    pacer.accepted(connection)
    ports[0].disconnecting = True  # type: ignore[attr-defined]
    pacer.finished(connection)
    assert not ports[0].reading and ports[1].reading


def test_a_finished_handshake_that_was_never_pending_changes_nothing() -> None:
    pacer, _clock, ports = paced(most=1)
    pacer.accepted(object())
    pacer.finished(object())
    assert pacer.paused and not ports[0].reading


def test_a_port_without_reading_controls_is_left_as_it_is() -> None:
    pacer = AcceptPacer(TurnClock(), most_pending=1)
    pacer.add_port(object())  # a plugin's endpoint, say
    pacer.accepted(object())  # nothing to pause: no error
    assert pacer.paused


def test_the_limit_must_be_a_positive_count() -> None:
    with pytest.raises(ValueError, match="most_pending must be at least 1, not 0"):
        AcceptPacer(TurnClock(), most_pending=0)


class Counting(Factory):
    def __init__(self) -> None:
        self.built = 0

    def buildProtocol(self, addr: Any) -> Protocol:
        self.built += 1
        return Protocol()


def test_twisteds_port_takes_at_most_the_cap_per_readable_event() -> None:
    # The route to Twisted's batch size: tcp.Port.numberAccepts, read and
    # regrown by doRead. This fails if Twisted renames or drops it.
    factory = Counting()
    port = tcp.Port(0, factory, backlog=1000, interface="127.0.0.1", reactor=reactor)
    port.startListening()
    clients = []
    try:
        assert cap_accepts_per_turn(port, ACCEPTS_PER_TURN) is True
        for _ in range(ACCEPTS_PER_TURN + 50):
            client = socket.create_connection(("127.0.0.1", port.getHost().port))
            clients.append(client)
        port.numberAccepts = 10 * ACCEPTS_PER_TURN  # as a storm would have grown it
        port.doRead()
        assert factory.built == ACCEPTS_PER_TURN
    finally:
        for client in clients:
            client.close()
        port.stopReading()
        port.connectionLost(None)


def test_an_object_that_is_not_twisteds_port_is_not_capped() -> None:
    assert cap_accepts_per_turn(object(), 10) is False
