"""
The keepalive state machine on plain values: no reactor, no Autobahn.
"""

from __future__ import annotations

import pytest

from twisted_keepalive.core.errors import PingInFlight
from twisted_keepalive.core.heartbeat import Heartbeat, Phase
from twisted_keepalive.core.verdict import MAX_GRACE_FACTOR, Cause, Evidence, Verdict

SILENT = Evidence(received_at=0.0)


def started(interval: float | None = 10.0, timeout: float | None = 5.0) -> Heartbeat:
    heartbeat = Heartbeat()
    heartbeat.start(0.0, interval, timeout)
    return heartbeat


def test_first_ping_is_due_one_interval_after_open() -> None:
    heartbeat = started()
    assert heartbeat.wake_at == 10.0
    assert heartbeat.wake(9.0) is Verdict.WAIT
    assert heartbeat.wake(10.0) is Verdict.PING
    assert heartbeat.keepalive_payload is not None


def test_first_delay_can_be_shorter_than_the_interval() -> None:
    heartbeat = Heartbeat()
    heartbeat.start(100.0, 10.0, 5.0, first_delay=3.0)
    assert heartbeat.wake_at == 103.0


def test_pong_sets_latency_and_next_ping_is_an_interval_after_the_last() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    payload = heartbeat.keepalive_payload
    assert payload is not None
    heartbeat.pong_received(payload, 10.25)
    assert heartbeat.latency == pytest.approx(0.25)
    assert heartbeat.keepalive_payload is None
    # Ping to ping, like websockets: the wait is the interval less the latency.
    assert heartbeat.wake_at == 20.0


def test_slow_pong_sends_next_ping_at_once_when_round_trip_exceeds_interval() -> None:
    heartbeat = started(interval=1.0, timeout=5.0)
    heartbeat.wake(1.0)
    payload = heartbeat.keepalive_payload
    assert payload is not None
    heartbeat.pong_received(payload, 3.5)
    assert heartbeat.wake_at == 3.5


def test_no_pong_within_timeout_rechecks_once_then_times_out() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    assert heartbeat.wake_at == 15.0
    assert heartbeat.wake(14.0) is Verdict.WAIT
    assert heartbeat.wake(15.0) is Verdict.RECHECK
    assert heartbeat.judge(15.0, SILENT) is Verdict.TIMEOUT
    assert heartbeat.timeout is not None
    assert heartbeat.timeout.cause is Cause.PEER_SILENT
    assert heartbeat.timeout.waited == pytest.approx(5.0)
    assert heartbeat.wake_at is None


def test_pong_read_during_recheck_saves_the_connection() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    payload = heartbeat.keepalive_payload
    assert payload is not None
    assert heartbeat.wake(16.0) is Verdict.RECHECK
    heartbeat.pong_received(payload, 16.0)
    assert heartbeat.judge(16.0, SILENT) is Verdict.WAIT
    assert heartbeat.timeout is None
    assert heartbeat.wake_at == 20.0


def test_late_deadline_blames_the_stalled_reactor() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    assert heartbeat.wake(18.0) is Verdict.RECHECK
    assert heartbeat.judge(18.01, SILENT) is Verdict.TIMEOUT
    assert heartbeat.timeout is not None
    assert heartbeat.timeout.cause is Cause.REACTOR_STALLED
    assert heartbeat.timeout.lateness == pytest.approx(3.0)


def test_without_timeout_pings_go_out_every_interval_regardless_of_pongs() -> None:
    heartbeat = started(interval=10.0, timeout=None)
    sent = []
    for now in (10.0, 20.0, 30.0):
        assert heartbeat.wake_at == now
        assert heartbeat.wake(now) is Verdict.PING
        sent.append(heartbeat.keepalive_payload)
    assert len(set(sent)) == 3
    assert heartbeat.timeout is None


def test_without_interval_nothing_is_scheduled() -> None:
    heartbeat = started(interval=None)
    assert heartbeat.wake_at is None


def test_pong_acknowledges_every_earlier_ping_with_its_own_latency() -> None:
    heartbeat = started()
    heartbeat.ping_sent(b"a", 1.0, b"a")
    heartbeat.ping_sent(b"b", 2.0, b"b")
    heartbeat.ping_sent(b"c", 3.0, b"c")
    acknowledged = heartbeat.pong_received(b"b", 4.0)
    assert acknowledged == ((b"a", 3.0), (b"b", 2.0))
    assert heartbeat.latency == 2.0
    assert heartbeat.pong_received(b"c", 5.0) == ((b"c", 2.0),)


def test_keepalive_pong_acknowledges_earlier_application_pings() -> None:
    heartbeat = started()
    heartbeat.ping_sent(b"app", 9.0, b"app")
    heartbeat.wake(10.0)
    payload = heartbeat.keepalive_payload
    assert payload is not None
    assert heartbeat.pong_received(payload, 10.5) == ((b"app", 1.5),)


def test_application_pong_acknowledges_earlier_keepalive_ping() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    heartbeat.ping_sent(b"app", 11.0, b"app")
    heartbeat.pong_received(b"app", 12.0)
    assert heartbeat.keepalive_payload is None
    assert heartbeat.wake_at == 20.0


def test_unknown_and_unsolicited_pongs_change_nothing() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    assert heartbeat.pong_received(b"nope", 11.0) is None
    assert heartbeat.keepalive_payload is not None
    assert heartbeat.latency == 0.0


def test_duplicate_payload_in_flight_is_refused() -> None:
    heartbeat = started()
    heartbeat.ping_sent(b"x", 1.0, b"x")
    with pytest.raises(PingInFlight, match="already waiting"):
        heartbeat.ping_sent(b"x", 2.0, b"x")


def test_forgotten_ping_is_not_acknowledged() -> None:
    heartbeat = started()
    heartbeat.ping_sent(b"x", 1.0, b"x")
    heartbeat.forget(b"x", b"x")
    assert heartbeat.pong_received(b"x", 2.0) is None


def test_new_payloads_are_unique() -> None:
    heartbeat = started()
    payloads = set()
    for _ in range(1000):
        payload = heartbeat.new_payload()
        heartbeat.ping_sent(payload, 1.0, payload)
        payloads.add(payload)
    assert len(payloads) == 1000


def test_close_returns_pending_application_waiters_once_and_unschedules() -> None:
    heartbeat = started()
    heartbeat.ping_sent(b"x", 1.0, b"x")
    assert heartbeat.close() == (b"x",)
    assert heartbeat.close() == ()
    assert heartbeat.wake_at is None
    assert heartbeat.phase is Phase.CLOSED


def test_peer_mid_frame_with_fresh_bytes_gets_more_time() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    heartbeat.wake(15.0)
    busy = Evidence(received_at=14.5, mid_frame=True)
    assert heartbeat.judge(15.0, busy) is Verdict.WAIT
    assert heartbeat.wake_at == 19.5
    # Bytes stop: silence for ping_timeout after the last one fails it.
    assert heartbeat.wake(19.5) is Verdict.RECHECK
    assert heartbeat.judge(19.5, busy) is Verdict.TIMEOUT
    assert heartbeat.timeout is not None
    assert heartbeat.timeout.cause is Cause.PEER_SILENT
    assert heartbeat.timeout.idle == pytest.approx(5.0)


def test_bytes_outside_a_frame_never_stand_in_for_a_pong() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    heartbeat.wake(15.0)
    chatty = Evidence(received_at=14.9, mid_frame=False)
    assert heartbeat.judge(15.0, chatty) is Verdict.TIMEOUT


def test_trickling_peer_is_failed_after_the_grace_limit() -> None:
    heartbeat = started(interval=10.0, timeout=1.0)
    heartbeat.wake(10.0)
    now = 11.0
    verdict = Verdict.WAIT
    while verdict is Verdict.WAIT:
        assert heartbeat.wake(now) is Verdict.RECHECK
        verdict = heartbeat.judge(now, Evidence(received_at=now - 0.1, mid_frame=True))
        assert heartbeat.wake_at is None or heartbeat.wake_at > now
        now = heartbeat.wake_at if heartbeat.wake_at is not None else now
    assert heartbeat.timeout is not None
    assert heartbeat.timeout.cause is Cause.PEER_TOO_SLOW
    assert heartbeat.timeout.waited == pytest.approx(MAX_GRACE_FACTOR * 1.0)


def test_ping_queued_behind_draining_data_gets_more_time_but_not_a_stuck_queue() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    heartbeat.queued_behind(100_000)
    heartbeat.wake(15.0)
    draining = Evidence(received_at=0.0, delivered=400_000, queued=600_000)
    assert heartbeat.judge(15.0, draining) is Verdict.WAIT
    assert heartbeat.wake_at == 20.0
    heartbeat.wake(20.0)
    stuck = Evidence(received_at=0.0, delivered=400_000, queued=600_000)
    assert heartbeat.judge(20.0, stuck) is Verdict.TIMEOUT
    assert heartbeat.timeout is not None
    assert heartbeat.timeout.queued == 600_000


def test_ping_that_left_the_queue_is_judged_as_usual() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    heartbeat.queued_behind(100)
    heartbeat.wake(15.0)
    assert heartbeat.judge(15.0, Evidence(received_at=0.0, delivered=5_000)) is Verdict.TIMEOUT


def test_late_pings_do_not_push_the_schedule_back() -> None:
    heartbeat = started(interval=1.0, timeout=0.5)
    sent = []
    now = 1.0
    for _ in range(5):
        now += 0.015  # every timer fires 15 ms late
        assert heartbeat.wake(now) is Verdict.PING
        sent.append(now)
        payload = heartbeat.keepalive_payload
        assert payload is not None
        heartbeat.pong_received(payload, now + 0.001)
        assert heartbeat.wake_at is not None
        now = heartbeat.wake_at
    assert sent == pytest.approx([1.015, 2.015, 3.015, 4.015, 5.015])


def test_after_a_long_stall_the_schedule_restarts_from_now() -> None:
    heartbeat = started(interval=1.0, timeout=0.5)
    assert heartbeat.wake(7.5) is Verdict.PING
    payload = heartbeat.keepalive_payload
    assert payload is not None
    heartbeat.pong_received(payload, 7.6)
    assert heartbeat.wake_at == 8.5


def test_a_pong_that_may_wait_unread_in_our_receive_queue_is_waited_for() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    assert heartbeat.wake(15.0) is Verdict.RECHECK
    # The peer's bytes arrived but the reactor has not read them all yet.
    behind = Evidence(received_at=15.0, unread=2_000_000)
    assert heartbeat.judge(15.0, behind) is Verdict.WAIT
    assert heartbeat.wake_at == 15.0 + 5.0
    # Read up and no Pong among them: judged as usual.
    assert heartbeat.wake(20.0) is Verdict.RECHECK
    assert heartbeat.judge(20.0, Evidence(received_at=20.0, unread=0)) is Verdict.TIMEOUT
    assert heartbeat.timeout is not None
    assert heartbeat.timeout.cause is Cause.PEER_SILENT


def test_an_endless_unread_backlog_is_failed_at_the_grace_limit() -> None:
    heartbeat = started()
    heartbeat.wake(10.0)
    now = 15.0
    while heartbeat.wake(now) is Verdict.RECHECK:
        if heartbeat.judge(now, Evidence(received_at=now, unread=1)) is Verdict.TIMEOUT:
            break
        assert heartbeat.wake_at is not None
        now = heartbeat.wake_at
    assert heartbeat.timeout is not None
    assert heartbeat.timeout.cause is Cause.PEER_TOO_SLOW
    assert now == 10.0 + 5.0 * MAX_GRACE_FACTOR
