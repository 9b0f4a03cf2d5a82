"""
More of what the keepalive promises on either framing, beside
``test_behaviour.py`` and like it run once per framing (the ``framing``
fixture): the schedule after a Pong, the recheck after a late deadline,
verdicts on a Ping queued behind our data and on a frame begun too late, the
timeout and latency hooks and counters, a timeout hook that raises,
re-entrant errbacks and callbacks, browser heartbeats crossing a Close, and
client masks from a strong source.  Several were Autobahn-only tests before
Twisted's framing existed; they moved here so that each behaviour is tested
once, on both.
"""

from __future__ import annotations

import functools
import gc
import random
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionAborted
from twisted.internet.task import Clock
from twisted.logger import LogEvent
from twisted.python.failure import Failure

from twisted_keepalive import Cause, ConnectionClosed
from twisted_keepalive.glue import transport as probes

from .defect_support import Outcomes, client_frames, errors_in, raised_by, unmask
from .framings import TIMEOUT_HOOK, Events, Peer, open_peer
from .wire import CLOSE, PING, PONG, TEXT, frame, result_of

TIMEOUT_CLOSE = (1011).to_bytes(2, "big") + b"keepalive ping timeout"

#: Seconds past a deadline before looking: the timer grid may run it 20 ms late.
SLACK = 0.05


def opcodes(peer: Peer) -> list[int]:
    return [opcode for opcode, _ in peer.frames()]


def advance(peer: Peer, seconds: float, step: float = 0.01) -> None:
    """
    Advance the clock ``step`` at a time, as a running reactor would (one
    big ``Clock.advance`` runs every due call at the *new* time); a timer
    that raises fails the test with its error.
    """
    target = peer.clock.seconds() + seconds
    while (left := target - peer.clock.seconds()) > 1e-9:
        error = raised_by(functools.partial(peer.clock.advance, min(step, left)))
        if error is not None:
            pytest.fail(f"a keepalive timer raised {error!r}")


class TurnClock(Clock):
    """
    A ``Clock`` on which a call made for "now" waits for the next
    ``advance``, as on the reactor, which runs the timers due in one turn and
    then polls for I/O: what arrives in between is read before that call.
    """

    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> Any:
        return super().callLater(delay or 1e-9, f, *args, **kw)


@pytest.fixture
def restore_random() -> Iterator[None]:
    state = random.getstate()
    yield
    random.setstate(state)


# -- the schedule -----------------------------------------------------------------


def test_the_next_ping_is_an_interval_after_the_last_ping_not_after_its_pong(
    framing: str,
) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    [payload] = peer.pings()
    peer.clock.advance(0.3)
    peer.pong(payload)
    assert peer.keepalive.latency == pytest.approx(0.3)
    peer.clock.advance(0.69)
    assert peer.pings() == []
    peer.clock.advance(0.01)
    assert len(peer.pings()) == 1


def test_a_pong_brings_the_next_ping_forward_when_the_timeout_is_longer_than_the_interval(
    framing: str,
) -> None:
    peer = open_peer(framing, ping_timeout=5.0)
    peer.clock.advance(1.0)
    [payload] = peer.pings()
    peer.clock.advance(0.1)
    peer.pong(payload)
    # Left on the deadline's timer (6.0), the next Ping would wait for it.
    peer.clock.advance(0.89)
    assert peer.pings() == []
    # Due at 2.0, one 20 ms slot late at most.
    peer.clock.advance(0.03)
    assert len(peer.pings()) == 1


# -- the recheck after a late deadline ------------------------------------------------


def test_a_pong_read_after_a_late_deadline_saves_the_connection(framing: str) -> None:
    peer = open_peer(framing, clock=TurnClock())
    peer.clock.advance(1.0)
    [payload] = peer.pings()
    # The reactor is blocked past the deadline (1.5); the Pong arrived
    # meanwhile and is read in the turn after the overdue deadline ran.
    peer.clock.advance(1.5)
    peer.pong(payload)
    peer.clock.advance(0.01)
    assert all(opcode != CLOSE for opcode in opcodes(peer))
    assert peer.events.timeouts == []
    assert peer.keepalive.keepalive_timeout is None
    assert peer.keepalive.latency == pytest.approx(1.5)


def test_a_peer_still_silent_after_a_late_deadline_is_failed_blaming_the_reactor(
    framing: str, logged: list[LogEvent]
) -> None:
    peer = open_peer(framing, clock=TurnClock())
    peer.clock.advance(1.0)
    peer.pings()
    peer.clock.advance(1.5)
    assert peer.frames() == [], "judged before the reactor could read"
    peer.clock.advance(0.01)
    assert peer.frames() == [(CLOSE, TIMEOUT_CLOSE)]
    [timeout] = peer.events.timeouts
    assert timeout.cause is Cause.REACTOR_STALLED
    assert timeout.lateness == pytest.approx(1.0)
    [warning] = [e for e in logged if e.get("keepalive_event") == "timeout"]
    assert warning["cause"] is Cause.REACTOR_STALLED
    assert warning["lateness"] == pytest.approx(1.0)


# -- verdicts ---------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["server", "client"])
def test_application_pings_are_masked_by_clients_only(framing: str, side: str) -> None:
    peer = open_peer(framing, side)
    peer.frames()
    peer.keepalive.ping(b"from the " + side.encode())
    raw = peer.transport.value()
    assert raw[0] == 0x80 | PING
    assert bool(raw[1] & 0x80) is (side == "client")
    assert peer.frames() == [(PING, b"from the " + side.encode())]


def test_a_frame_begun_long_after_the_ping_is_no_excuse_for_its_pong(framing: str) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    assert peer.pings()
    big = frame(TEXT, b"x" * 10_000, masked=peer.masks)
    peer.clock.advance(0.2)
    peer.deliver(big[:1000])
    for i in range(1, 6):
        peer.clock.advance(0.1)
        peer.deliver(big[i * 1000 : (i + 1) * 1000])
    # The deadline was 1.5: the frame began at 1.2, after the Ping reached a
    # peer on a link with no measured latency.
    assert CLOSE in opcodes(peer)
    assert peer.events.timeouts[0].cause is Cause.PEER_SILENT


@pytest.mark.parametrize("reads", [True, False])
def test_a_ping_queued_behind_our_data_waits_for_a_reader_that_drains_it(
    framing: str, monkeypatch: pytest.MonkeyPatch, reads: bool
) -> None:
    peer = open_peer(framing)
    # What the peer has read of our stream; the rest is still queued.
    read = {"bytes": peer.transport.written}

    def unsent(transport: Any) -> int | None:
        if transport is not peer.transport:
            return None  # what the probe says of anything but a transport
        return int(peer.transport.written - read["bytes"])

    monkeypatch.setattr(probes, "unsent", unsent)
    peer.send_ours(b"x" * 100_000)
    read["bytes"] += 40_000
    peer.clock.advance(1.0)
    assert peer.pings()
    if reads:
        read["bytes"] += 20_000
    peer.clock.advance(0.52)
    if not reads:
        # A reader that stopped: the Ping never reached it, and never will.
        assert CLOSE in opcodes(peer)
        return
    assert CLOSE not in opcodes(peer)
    # It stops reading: ping_timeout after the last progress, it is failed.
    peer.clock.advance(0.5)
    assert CLOSE in opcodes(peer)


# -- hooks and counters -------------------------------------------------------------------


def test_the_timeout_hook_and_counters_say_why(framing: str) -> None:
    peer = open_peer(framing, stats=True)
    stats = peer.stats
    peer.clock.advance(1.0)
    peer.clock.advance(0.5)
    [timeout] = peer.events.timeouts
    assert timeout.cause is Cause.PEER_SILENT
    assert timeout.waited == pytest.approx(0.5)
    assert timeout.idle == pytest.approx(1.5)
    assert (timeout.ping_interval, timeout.ping_timeout) == (1.0, 0.5)
    assert stats.timeouts[Cause.PEER_SILENT] == 1
    assert stats.pings_sent == 1
    assert (stats.opened, stats.open) == (1, 1)
    peer.clock.advance(2.0)
    peer.lose(ConnectionAborted)
    assert (stats.opened, stats.closed, stats.open) == (1, 1, 0)


def test_the_latency_hook_and_histogram_count_every_matched_pong(framing: str) -> None:
    peer = open_peer(framing, stats=True)
    stats = peer.stats
    for _ in range(3):
        peer.clock.advance(1.0)
        [payload] = peer.pings()
        peer.clock.advance(0.25)
        peer.pong(payload)
    peer.pong(b"unknown")
    assert peer.events.latencies == [0.25, 0.25, 0.25]
    assert stats.pongs_received == 3
    assert sum(stats.latency_counts) == 3
    assert stats.latency_sum == pytest.approx(0.75)
    assert stats.pings_sent == 3
    # The loop advances a whole second after each Pong: the first Ping is on
    # time, the next two go out 0.25 s and 0.5 s after they were due.
    assert sum(stats.lateness_counts) == 3
    assert stats.lateness_sum == pytest.approx(0.75)


def test_a_timeout_hook_that_raises_is_logged_and_the_connection_failed_anyway(
    framing: str, logged: list[LogEvent]
) -> None:
    peer = open_peer(framing, events=Events(timeout_hook_raises=True))
    peer.clock.advance(1.0)
    peer.pings()
    peer.clock.advance(0.5)
    assert peer.frames() == [(CLOSE, TIMEOUT_CLOSE)]
    [hook] = [e for e in logged if e.get("log_failure") is not None]
    assert hook["protocol"] is peer.application
    assert hook["log_format"] == (
        f"{TIMEOUT_HOOK[framing]} of {{protocol!r}} raised; closing the connection anyway"
    )
    assert isinstance(hook["log_failure"].value, RuntimeError)
    [warning] = [e for e in logged if e.get("keepalive_event") == "timeout"]
    assert warning["close_timeout"] == 2.0
    peer.clock.advance(2.0)
    assert peer.transport.aborted
    [abort] = [e for e in logged if e.get("keepalive_event") == "abort"]
    assert abort["close_timeout"] == 2.0


def test_a_peer_that_answers_our_1011_is_not_aborted_by_the_keepalive(
    framing: str, logged: list[LogEvent]
) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    peer.clock.advance(0.5)
    assert peer.frames()[-1] == (CLOSE, TIMEOUT_CLOSE)
    peer.receive(CLOSE, (1011).to_bytes(2, "big"))
    peer.lose()
    # Our abort timer is gone with the connection.  (Autobahn itself drops
    # TCP with an abort once the closing handshake is over, as a server.)
    assert peer.clock.getDelayedCalls() == []
    peer.clock.advance(10.0)
    assert [e for e in logged if e.get("keepalive_event") == "abort"] == []


def test_a_pong_slower_than_the_interval_counts_when_ping_timeout_is_none(framing: str) -> None:
    peer = open_peer(framing, ping_timeout=None)
    answer_at: list[tuple[float, bytes]] = []
    for _ in range(800):  # 8 s
        advance(peer, 0.01)
        now = peer.clock.seconds()
        answer_at += [(now + 2.5, payload) for payload in peer.pings()]
        while answer_at and answer_at[0][0] <= now + 1e-9:
            peer.pong(answer_at.pop(0)[1])
    assert peer.keepalive.latency == pytest.approx(2.5, abs=0.03)
    latencies = peer.events.latencies
    assert latencies and latencies == pytest.approx([2.5] * len(latencies), abs=0.03)
    assert all(opcode == PING for opcode, _ in peer.seen)
    assert peer.keepalive.keepalive_timeout is None and not peer.transport.aborted
    assert peer.events.lost == []


# -- re-entrant errbacks and callbacks -------------------------------------------------


def cancel_each_other(keepalive: Any, outcomes: Outcomes) -> None:
    """Two pending pings, ``a`` and ``b``; whichever settles first cancels the other."""
    a = keepalive.ping(b"a")
    b = keepalive.ping(b"b")
    outcomes.watch("a", a, then=b.cancel)
    outcomes.watch("b", b, then=a.cancel)


def kinds(outcomes: Outcomes) -> set[type]:
    found = set()
    for name in ("a", "b"):
        result = outcomes.only(name)
        assert isinstance(result, Failure), (name, result)
        found.add(type(result.value))
    return found


def test_the_timeout_fails_the_connection_when_one_pending_pings_errback_cancels_another(
    framing: str, logged: list[LogEvent]
) -> None:
    peer = open_peer(framing)
    outcomes = Outcomes()
    cancel_each_other(peer.keepalive, outcomes)
    advance(peer, 1.0 + 0.5 + SLACK)
    assert peer.frames()[-1] == (CLOSE, TIMEOUT_CLOSE)
    assert len(peer.events.timeouts) == 1
    assert kinds(outcomes) == {CancelledError, ConnectionClosed}
    [closed] = [
        outcomes.only(n).value
        for n in ("a", "b")
        if isinstance(outcomes.only(n).value, ConnectionClosed)
    ]
    assert (closed.code, closed.reason) == (1011, "keepalive ping timeout")
    advance(peer, 2.0 - 2 * SLACK)
    assert not peer.transport.aborted
    advance(peer, 3 * SLACK)
    assert peer.transport.aborted, "the dead connection was not aborted close_timeout later"
    peer.lose(ConnectionAborted)
    assert len(peer.events.timeouts) == 1
    kinds(outcomes)  # still exactly once each
    gc.collect()  # an unhandled Deferred failure is logged when it is collected
    assert errors_in(logged) == []


def test_the_close_hook_runs_when_the_peer_closes_while_pending_pings_cancel_each_other(
    framing: str, logged: list[LogEvent]
) -> None:
    peer = open_peer(framing)
    outcomes = Outcomes()
    cancel_each_other(peer.keepalive, outcomes)
    peer.receive(CLOSE, (1000).to_bytes(2, "big") + b"bye")
    error = raised_by(peer.lose)
    assert error is None, f"the close path raised {error!r}"
    assert len(peer.events.lost) == 1, "the application's close hook did not run once"
    assert kinds(outcomes) == {CancelledError, ConnectionClosed}
    gc.collect()
    assert errors_in(logged) == []


def test_a_callback_repinging_with_an_acknowledged_payload_fails_the_new_ping_on_close(
    framing: str,
) -> None:
    peer = open_peer(framing, ping_interval=None)
    keepalive = peer.keepalive
    outcomes = Outcomes()
    a = keepalive.ping(b"a")
    b = keepalive.ping(b"b")
    outcomes.watch("a", a, then=lambda: outcomes.watch("b again", keepalive.ping(b"b")))
    outcomes.watch("b", b)
    advance(peer, 0.1)
    peer.pong(b"b")  # acknowledges a and b
    assert outcomes.only("a") == pytest.approx(0.1, abs=0.03)
    assert outcomes.only("b") == pytest.approx(0.1, abs=0.03)
    assert outcomes.results["b again"] == [], "the new b Ping fired with the old Pong"
    peer.receive(CLOSE, (1000).to_bytes(2, "big"))
    peer.lose()
    failure = outcomes.only("b again")
    assert isinstance(failure, Failure) and isinstance(failure.value, ConnectionClosed)


# -- browser heartbeats crossing a Close ---------------------------------------------------


@pytest.mark.parametrize("close", ["ours", "timeout"])
def test_a_browser_heartbeat_crossing_our_close_is_dropped_and_the_close_completes(
    framing: str, close: str, logged: list[LogEvent]
) -> None:
    peer = open_peer(framing, browser_heartbeat=True)
    if close == "ours":
        peer.close_ours(1000)
        code = 1000
    else:
        advance(peer, 1.0 + 0.5 + SLACK)
        code = 1011
    assert opcodes(peer)[-1] == CLOSE
    # The page's heartbeat was on its way; then it answers our Close.
    error = raised_by(
        lambda: peer.deliver(
            frame(TEXT, b"\x00wsk1 ping abc", masked=peer.masks)
            + frame(CLOSE, code.to_bytes(2, "big"), masked=peer.masks)
        )
    )
    assert error is None, f"reading the heartbeat and the Close reply raised {error!r}"
    assert peer.frames() == [], "something was sent after our Close"
    peer.lose()
    assert len(peer.events.lost) == 1
    assert peer.events.messages == []
    assert peer.clock.getDelayedCalls() == []  # no abort left to come
    assert errors_in(logged) == []


# -- client masks ------------------------------------------------------------------------


def _client_ping_masks(framing: str, seed: int, application: bool) -> list[bytes]:
    peer = open_peer(framing, "client", ping_interval=None if application else 1.0)
    # Autobahn's factory reseeds random from the OS when it is made; seed
    # after it, as any application may (a simulation, a test, a game).
    random.seed(seed)
    masks = []
    for payload in (b"one", b"two", b"three and more"):
        peer.transport.clear()
        waiter: Deferred[float] | None = None
        if application:
            waiter = peer.keepalive.ping(payload)
        else:
            advance(peer, 1.0 + SLACK)
        [(opcode, key, masked)] = client_frames(peer.transport.value())
        assert opcode == PING
        masks.append(key)
        peer.pong(unmask(key, masked))
        if waiter is not None:
            assert isinstance(result_of(waiter), float)
    return masks


@pytest.mark.usefixtures("restore_random")
@pytest.mark.parametrize("application", [False, True], ids=["keepalive", "application"])
def test_client_ping_mask_keys_do_not_come_from_the_random_module(
    framing: str, application: bool
) -> None:
    first = _client_ping_masks(framing, 1234, application)
    second = _client_ping_masks(framing, 1234, application)
    assert first != second, (
        f"the same mask keys after reseeding random: {[k.hex() for k in first]} "
        "(RFC 6455 5.3 asks for a strong source of entropy)"
    )


# -- the peer's Pings, and ping() while closing ---------------------------------------------


@pytest.mark.parametrize("side", ["server", "client"])
def test_the_peers_ping_is_answered_with_its_payload(framing: str, side: str) -> None:
    peer = open_peer(framing, side)
    peer.receive(PING, b"are you there")
    assert peer.frames() == [(PONG, b"are you there")]


def test_ping_after_a_timeout_or_while_closing_says_why_it_cannot_go_out(framing: str) -> None:
    peer = open_peer(framing)
    peer.clock.advance(1.0)
    peer.clock.advance(0.52)
    failure = result_of(peer.keepalive.ping())
    assert isinstance(failure, Failure) and isinstance(failure.value, ConnectionClosed)
    assert (failure.value.code, failure.value.reason) == (1011, "keepalive ping timeout")

    other = open_peer(framing)
    other.close_ours(1000)
    failure = result_of(other.keepalive.ping())
    assert isinstance(failure.value, ConnectionClosed)
    assert (failure.value.code, failure.value.reason) == (
        None,
        "the WebSocket connection is closing",
    )


def test_a_pending_ping_fails_with_the_peers_answer_to_our_close(framing: str) -> None:
    peer = open_peer(framing)
    pending = peer.keepalive.ping(b"x")
    peer.close_ours(1000)
    assert not pending.called
    peer.receive(CLOSE, (1000).to_bytes(2, "big") + b"ok")
    peer.lose()
    failure = result_of(pending)
    assert isinstance(failure.value, ConnectionClosed)
    assert (failure.value.code, failure.value.reason) == (1000, "ok")
