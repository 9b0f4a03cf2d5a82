"""
Edges of the keepalive core and of its Autobahn link that the mutation run
(docs/mutation.md) found unchecked: each test pins one behaviour a mutant
changed while the rest of the suite still passed.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent

from twisted_keepalive import Cause, KeepaliveStats
from twisted_keepalive.core.heartbeat import Heartbeat
from twisted_keepalive.core.ledger import MAX_UNANSWERED_KEEPALIVES
from twisted_keepalive.core.phase import Phase
from twisted_keepalive.core.verdict import Deadline, Evidence, Timeout, Verdict, judge
from twisted_keepalive.core.wheel import TimerWheel, WheelEntry

from .wire import (
    CLOSE,
    EchoServer,
    open_server,
)


def opcodes(peer: Any) -> list[int]:
    return [opcode for opcode, _ in peer.frames()]


# -- the core ------------------------------------------------------------------


def test_a_new_heartbeat_has_no_settings_no_pings_and_nothing_scheduled() -> None:
    heartbeat = Heartbeat()
    assert heartbeat.phase is Phase.NEW
    assert heartbeat.ping_interval is None and heartbeat.ping_timeout is None
    assert (heartbeat.latency, heartbeat.pongs, heartbeat.ping_lateness) == (0.0, 0, 0.0)
    assert heartbeat.wake_at is None and heartbeat.timeout is None
    assert heartbeat.in_flight == 0 and heartbeat.keepalive_payload is None
    assert not heartbeat.accepts_pings


def test_without_timeout_the_unanswered_count_survives_pongs() -> None:
    # A Pong for the only Ping in flight, then one for an older Ping among
    # several: either way the ledger keeps exactly the newest
    # MAX_UNANSWERED_KEEPALIVES unanswered keepalive Pings, no fewer.
    heartbeat = Heartbeat()
    heartbeat.start(0.0, 1.0, None)
    now = 1.0
    heartbeat.wake(now)
    first = heartbeat.keepalive_payload
    assert first is not None
    assert heartbeat.pong_received(first, now + 0.5) == ()
    sent = []
    for _ in range(5):
        now += 1.0
        assert heartbeat.wake(now) is Verdict.PING
        sent.append((heartbeat.keepalive_payload, now))
    # A slow Pong for the third: it and the two before it are settled.
    assert heartbeat.pong_received(sent[2][0], now) == ()
    assert heartbeat.latency == now - sent[2][1]
    assert heartbeat.in_flight == 2
    for _ in range(MAX_UNANSWERED_KEEPALIVES - 2):
        now += 1.0
        heartbeat.wake(now)
        sent.append((heartbeat.keepalive_payload, now))
    assert heartbeat.in_flight == MAX_UNANSWERED_KEEPALIVES
    # The oldest still in flight measures its round trip.
    oldest, _ = sent[3]
    assert oldest is not None
    now += 1.0
    heartbeat.wake(now)  # one more: the oldest makes room
    assert heartbeat.in_flight == MAX_UNANSWERED_KEEPALIVES
    assert heartbeat.pong_received(oldest, now) is None
    survivor, survivor_at = sent[4]
    assert survivor is not None
    assert heartbeat.pong_received(survivor, now + 0.25) == ()
    assert heartbeat.latency == now + 0.25 - survivor_at
    # Room for one more without dropping any.
    now += 1.0
    heartbeat.wake(now)
    assert heartbeat.in_flight == MAX_UNANSWERED_KEEPALIVES


def test_keepalive_payloads_skip_application_payloads_and_keep_sending_order() -> None:
    # Keepalive payloads count up with every Ping sent; the application takes
    # the very payloads the next keepalive Pings would have had.
    heartbeat = Heartbeat()
    heartbeat.start(0.0, 10.0, 5.0)
    app = (2).to_bytes(4, "big")
    heartbeat.ping_sent(app, 1.0, "app")
    heartbeat.wake(10.0)
    keepalive = heartbeat.keepalive_payload
    assert keepalive is not None and keepalive != app and len(keepalive) == 4
    # The application's Pong settles its own Ping, sent before the keepalive
    # Ping, and not the keepalive Ping.
    assert heartbeat.pong_received(app, 10.5) == (("app", 9.5),)
    assert heartbeat.keepalive_payload == keepalive
    assert heartbeat.phase is Phase.AWAITING_PONG and heartbeat.wake_at == 15.0


def test_keepalive_payloads_stay_unique_when_they_collide_again_and_again() -> None:
    heartbeat = Heartbeat()
    heartbeat.start(0.0, 1.0, None)
    sent = []
    for now, taken in ((1.0, 2), (2.0, 5), (3.0, 8)):
        heartbeat.ping_sent(taken.to_bytes(4, "big"), now - 0.5, taken)
        heartbeat.wake(now)
        sent.append(heartbeat.keepalive_payload)
    assert len(set(sent)) == 3 and heartbeat.in_flight == 6
    assert not {p for p in sent if p is not None} & {n.to_bytes(4, "big") for n in (2, 5, 8)}


def test_a_pong_after_the_timeout_verdict_counts_for_nothing() -> None:
    heartbeat = Heartbeat()
    heartbeat.start(0.0, 10.0, 5.0)
    heartbeat.ping_sent(b"app", 9.0, "waiter")
    heartbeat.wake(10.0)
    payload = heartbeat.keepalive_payload
    assert payload is not None
    heartbeat.wake(15.0)
    assert heartbeat.judge(15.0, Evidence(received_at=0.0)) is Verdict.TIMEOUT
    assert heartbeat.pong_received(payload, 15.1) is None
    assert heartbeat.pong_received(b"app", 15.1) is None
    assert (heartbeat.pongs, heartbeat.latency) == (0, 0.0)
    assert heartbeat.judge(15.2, Evidence(received_at=15.1)) is Verdict.TIMEOUT
    assert heartbeat.close() == ("waiter",)


def test_a_frame_begun_within_a_round_trip_after_the_ping_still_holds_the_pong_back() -> None:
    # The Ping needs half a round trip to reach the peer, the frame's first
    # bytes half a round trip to come back: a frame seen up to one round trip
    # after the Ping may have begun before the Ping arrived.
    ping = Deadline(sent_at=10.0, deadline=11.0, fired_at=11.0, queued_at=None)
    busy = Evidence(received_at=10.95, mid_frame=True, frame_began_at=10.9)
    assert judge(11.0, ping, busy, latency=1.0, ping_interval=10.0, ping_timeout=1.0) == 11.95
    outcome = judge(11.0, ping, busy, latency=0.0, ping_interval=10.0, ping_timeout=1.0)
    assert isinstance(outcome, Timeout) and outcome.cause is Cause.PEER_SILENT


def test_a_reader_that_keeps_draining_keeps_its_grace_until_it_stops() -> None:
    heartbeat = Heartbeat()
    heartbeat.start(0.0, 10.0, 5.0)
    heartbeat.wake(10.0)
    heartbeat.queued_behind(1_000)
    now = 15.0
    for delivered in (2_000, 3_000):
        assert heartbeat.wake(now) is Verdict.RECHECK
        draining = Evidence(received_at=0.0, delivered=delivered, queued=50_000)
        assert heartbeat.judge(now, draining) is Verdict.WAIT
        assert heartbeat.wake_at == now + 5.0
        now += 5.0
    assert heartbeat.wake(now) is Verdict.RECHECK
    stuck = Evidence(received_at=0.0, delivered=3_000, queued=50_000)
    assert heartbeat.judge(now, stuck) is Verdict.TIMEOUT


def test_a_deadline_just_past_a_grid_point_runs_in_the_next_slot_never_early() -> None:
    # 0.060000000000000005 / 0.02 rounds down to exactly 3.0, and 3 * 0.02 is
    # 0.06: the division alone would put the deadline a hair early.
    clock = Clock()
    wheel = TimerWheel(clock, clock.seconds, grid=0.02)
    deadline = 0.060000000000000005
    fired: list[float] = []

    class Owner(WheelEntry):
        def wheel_fired(self) -> None:
            fired.append(clock.seconds())

    wheel.add(Owner(), wheel.slot_of(deadline))
    [call] = clock.getDelayedCalls()
    assert call.getTime() >= deadline and call.getTime() - deadline < 0.02
    clock.advance(call.getTime())
    assert fired == [call.getTime()]


def test_a_wheel_needs_a_positive_grid() -> None:
    for grid in (0, 0.0, -0.02):
        with pytest.raises(ValueError, match="grid must be a positive number of seconds"):
            TimerWheel(Clock(), lambda: 0.0, grid=grid)


def test_removing_an_owner_that_is_not_in_a_busy_slot_keeps_the_slot() -> None:
    clock = Clock()
    wheel = TimerWheel(clock, clock.seconds, grid=0.25)
    fired: list[str] = []

    class Owner(WheelEntry):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def wheel_fired(self) -> None:
            fired.append(self.name)

    stays, stranger = Owner("stays"), Owner("stranger")
    wheel.add(stays, 4)
    wheel.remove(stranger)
    assert len(wheel) == 1 and len(clock.getDelayedCalls()) == 1
    clock.advance(1.0)
    assert fired == ["stays"]


def test_a_failing_owner_is_logged_by_name(logged: list[LogEvent]) -> None:
    clock = Clock()
    wheel = TimerWheel(clock, clock.seconds, grid=0.25)

    class Broken(WheelEntry):
        def wheel_fired(self) -> None:
            raise RuntimeError("boom")

    broken = Broken()
    wheel.add(broken, 4)
    clock.advance(1.0)
    [event] = [e for e in logged if e.get("log_failure") is not None]
    assert event["owner"] is broken
    assert event["log_format"] == "keepalive deadline of {owner!r} failed"
    assert isinstance(event["log_failure"].value, RuntimeError)


# -- the Autobahn link -----------------------------------------------------------


@pytest.mark.parametrize("option", ["logFrames", "logOctets"])
def test_a_protocol_that_logs_frames_or_octets_sends_keepalive_through_autobahn(
    option: str,
) -> None:
    sent: list[bytes] = []

    class Logging(EchoServer):
        def sendPing(self, payload: bytes | None = None) -> None:
            sent.append(payload or b"")
            super().sendPing(payload)

    peer = open_server(Logging, factory_setup=lambda f: setattr(f, option, True))
    peer.clock.advance(1.0)
    [payload] = peer.pings()
    assert sent == [payload] and len(payload) == 4
    peer.pong(payload)
    peer.clock.advance(0.5)
    assert CLOSE not in opcodes(peer)


def test_a_keepalive_ping_written_directly_is_counted_in_the_traffic_stats() -> None:
    peer = open_server(EchoServer)
    before = peer.protocol.trafficStats.outgoingOctetsWireLevel
    peer.clock.advance(1.0)
    assert peer.pings()
    assert peer.protocol.trafficStats.outgoingOctetsWireLevel == before + 6


def test_every_timeout_and_every_closed_connection_is_counted() -> None:
    stats = KeepaliveStats()
    peers = [
        open_server(
            EchoServer,
            Clock(),
            closeHandshakeTimeout=0,
            factory_setup=lambda f: setattr(f, "keepalive_stats", stats),
        )
        for _ in range(2)
    ]
    for peer in peers:
        peer.clock.advance(1.0)
        peer.clock.advance(0.52)
        peer.clock.advance(2.0)
        peer.lose()
    assert stats.timeouts[Cause.PEER_SILENT] == 2
    assert (stats.opened, stats.closed, stats.open) == (2, 2, 0)


