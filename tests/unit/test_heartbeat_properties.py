"""
Stateful properties of the keepalive core, on plain values.

A Hypothesis state machine drives one :class:`Heartbeat` through arbitrary
interleavings of timers (on time, early within the slack, or late by a
stall), rechecks judged on arbitrary evidence, Pongs of every kind,
application Pings and cancels, re-entrant waiter callbacks, ``halt()`` and
``close()``, while a small model of the adapter and of the ledger checks every
answer.  The invariants are listed on :class:`HeartbeatMachine`.

A second, smaller machine checks the :class:`TimerWheel` on a ``task.Clock``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import Phase as HypothesisPhase
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)
from twisted.internet.task import Clock

from twisted_keepalive.core.errors import PingInFlight
from twisted_keepalive.core.heartbeat import EARLY_WAKE_SLACK, Heartbeat
from twisted_keepalive.core.ledger import MAX_UNANSWERED_KEEPALIVES
from twisted_keepalive.core.phase import Phase
from twisted_keepalive.core.verdict import (
    MAX_GRACE_FACTOR,
    STALL_THRESHOLD,
    Cause,
    Evidence,
    Timeout,
    Verdict,
)
from twisted_keepalive.core.wheel import TimerWheel, WheelEntry

OPEN = (Phase.IDLE, Phase.AWAITING_PONG, Phase.RECHECKING)
SETTLING = (*OPEN, Phase.CLOSING)

# Float tolerance for the bounds (the exact model comparisons use none).
EPS = 1e-9

# Application payloads: small integers collide with the keepalive payloads
# the core derives from its sending rank.
APP_PAYLOADS = [i.to_bytes(4, "big") for i in range(1, 7)] + [b"", b"app"]


# Under mutmut (docs/mutation.md) the search is derandomized, so that every
# run kills the same mutants, and not shrunk: a kill needs no minimal example.
UNDER_MUTMUT = "MUTANT_UNDER_TEST" in os.environ


def machine_settings(examples: int, steps: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=UNDER_MUTMUT,
        phases=[HypothesisPhase.generate] if UNDER_MUTMUT else list(HypothesisPhase),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# -- the adapter's side, reduced to counters ---------------------------------


class Waiter:
    """An application Ping's waiter: how often each outcome reached it."""

    def __init__(self, payload: bytes, sent_at: float) -> None:
        self.payload = payload
        self.sent_at = sent_at
        self.fired: list[float] = []
        self.failed = 0
        self.cancelled = 0
        #: How often the core handed it out (settled by a Pong, or by close()).
        self.handed_out = 0

    @property
    def called(self) -> bool:
        return self.outcomes > 0

    @property
    def outcomes(self) -> int:
        return len(self.fired) + self.failed + self.cancelled

    def __repr__(self) -> str:
        return f"Waiter({self.payload!r}, sent_at={self.sent_at!r})"


@dataclass
class Entry:
    """The model's ledger entry: one Ping in flight."""

    payload: bytes
    sent_at: float
    waiter: Waiter | None  # None: a keepalive Ping


@dataclass
class Flight:
    """What the model knows of the latest keepalive Ping, for the bounds."""

    entry: Entry
    #: Bound on when it was due, from the last keepalive Pong (or start).
    due_bound: float
    #: The machine's running total of excused time (timer lateness, recheck
    #: turns) at that Pong: what accrued since is excused by the bound.
    excused: float
    graced: bool = False
    fired_at: float = 0.0
    deadline: float = 0.0
    saved: bool = False


times = st.one_of(
    st.sampled_from([0.0, EARLY_WAKE_SLACK / 2, 0.05, STALL_THRESHOLD, 0.5]),
    st.floats(min_value=0.0, max_value=40.0, allow_nan=False),
)
small_stalls = st.one_of(
    st.floats(min_value=-0.9 * EARLY_WAKE_SLACK, max_value=0.0),
    st.floats(min_value=0.0, max_value=2 * STALL_THRESHOLD),
)
stalls = st.one_of(small_stalls, st.floats(min_value=0.0, max_value=100.0))
recheck_turns = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=0.3))


class HeartbeatMachine(RuleBasedStateMachine):
    """
    Invariants, checked after every step (or inside the rule that matters):

    - the core's phase, ``wake_at``, keepalive payload, ledger size, latency
      and Pong count are what the model predicts, exactly;
    - each waiter is handed out by the core at most once, and reaches exactly
      one outcome (fired / failed / cancelled) by the end; the waiters still
      pending are exactly those of the model's ledger; after ``close()``
      none is pending;
    - after ``close()`` nothing is scheduled, whatever happens next;
    - a Pong for the latest keepalive Ping, or any later Ping, that arrived
      before the verdict means no TIMEOUT; with ``ping_timeout=None`` there
      is never a TIMEOUT (nor a RECHECK);
    - a TIMEOUT comes no later than the last keepalive Pong (or the start)
      + interval + ping_timeout (times MAX_GRACE_FACTOR once a busy peer was
      given grace), plus the timer lateness and recheck turns since; evidence
      that earns no grace always gives the TIMEOUT at once, and so does a
      judgement past the grace cap;
    - a Pong's latency is the round trip of its Ping; each application waiter
      it settles gets its own round trip;
    - at most one keepalive Ping in flight with a timeout, at most
      MAX_UNANSWERED_KEEPALIVES without, plus the application's Pings.
    """

    waiters = Bundle("waiters")

    def __init__(self) -> None:
        super().__init__()
        self.hb = Heartbeat()
        self.now = 0.0
        self.ledger: list[Entry] = []
        self.all_waiters: list[Waiter] = []
        self.retired: list[bytes] = []
        self.flight: Flight | None = None
        self.phase = Phase.NEW
        self.wake_at: float | None = None
        self.next_ping_at: float | None = None
        self.delivered: int | None = None
        self.latency = 0.0
        self.pongs = 0
        self.recheck_pending = False
        self.last_ack = 0.0
        self.excused = 0.0
        self.keepalives_sent = 0
        self.last_sent_at = 0.0
        self.excused_at_ack = 0.0

    # -- set-up ---------------------------------------------------------------

    @initialize(
        t0=st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
        interval=st.one_of(
            st.none(),
            st.floats(min_value=0.5, max_value=30.0),
            st.sampled_from([1.0, 10.0]),
            st.floats(min_value=0.5, max_value=2.0),
        ),
        timeout=st.one_of(
            st.none(),
            st.floats(min_value=0.2, max_value=20.0),
            st.sampled_from([0.5, 5.0]),
            st.floats(min_value=0.2, max_value=2.0),
        ),
        first=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)),
        on_open=st.lists(st.sampled_from(APP_PAYLOADS), max_size=3),
    )
    def start(
        self,
        t0: float,
        interval: float | None,
        timeout: float | None,
        first: float | None,
        on_open: list[bytes],
    ) -> None:
        self.now = t0
        # Not open yet: no Ping at all, no timer.
        assert not self.hb.accepts_pings and self.hb.wake_at is None
        self.app_ping(b"early", t0)
        assert self.hb.wake(t0) is Verdict.WAIT and self.hb.in_flight == 0
        # The adapter opens the heartbeat before the application's onOpen,
        # which may ping, and starts the schedule after it.
        self.hb.open()
        self.phase = Phase.IDLE
        for payload in on_open:
            self.app_ping(payload, t0)
        self.interval, self.timeout = interval, timeout
        first_delay = None if (first is None or interval is None) else first * interval
        self.hb.start(t0, interval, timeout, first_delay)
        self.phase = Phase.IDLE
        assert self.hb.ping_interval == interval and self.hb.ping_timeout == timeout
        if interval is not None:
            delay = interval if first_delay is None else first_delay
            self.wake_at = self.next_ping_at = t0 + delay
        # The first Ping's bound counts from the start.
        self.first_due = self.wake_at
        self.last_ack = t0

    # -- helpers ----------------------------------------------------------------

    def clamp(self, dt: float) -> float:
        """Advance the clock by ``dt``, but no timer may be skipped."""
        t = self.now + dt
        if self.wake_at is not None:
            t = min(t, max(self.now, self.wake_at))
        if self.phase is Phase.RECHECKING:
            self.excused += t - self.now
        return t

    def entry_of(self, payload: bytes) -> int | None:
        for i, entry in enumerate(self.ledger):
            if entry.payload == payload:
                return i
        return None

    def keepalive_count(self) -> int:
        return sum(1 for e in self.ledger if e.waiter is None)

    def pending(self) -> list[Waiter]:
        return [w for w in self.all_waiters if not w.called]

    def app_ping(self, payload: bytes, now: float) -> Waiter | None:
        """The application's ping(): the core refuses it or records it."""
        waiter = Waiter(payload, now)
        if self.phase not in OPEN:
            assert not self.hb.accepts_pings
            with pytest.raises(RuntimeError, match="no Ping can go out"):
                self.hb.ping_sent(payload, now, waiter)
            return None
        assert self.hb.accepts_pings
        if self.entry_of(payload) is not None:
            with pytest.raises(PingInFlight):
                self.hb.ping_sent(payload, now, waiter)
            return None
        self.hb.ping_sent(payload, now, waiter)
        self.ledger.append(Entry(payload, now, waiter))
        self.all_waiters.append(waiter)
        return waiter

    def cancel(self, waiter: Waiter) -> None:
        """The application cancels its Deferred: the adapter's canceller."""
        if waiter.called:
            return  # a fired Deferred ignores cancel()
        i = self.entry_of(waiter.payload)
        self.hb.forget(waiter.payload, waiter)
        if i is not None and self.ledger[i].waiter is waiter:
            del self.ledger[i]
            self.retired.append(waiter.payload)
        waiter.cancelled += 1

    def react(self, data: Any, waiter: Waiter, now: float, closing: bool) -> None:
        """What a waiter's callback (or errback) does, re-entering the core."""
        kind = data.draw(
            st.sampled_from(
                ["none", "ping_same", "ping_fresh", "ping_dup", "cancel_other", "halt", "close"]
            ),
            label="reaction",
        )
        event(f"reaction {kind} closing={closing}")
        if kind == "ping_same":
            self.app_ping(waiter.payload, now)
        elif kind == "ping_fresh":
            if self.phase in OPEN:
                self.app_ping(self.hb.new_payload(), now)
            else:
                self.app_ping(data.draw(st.sampled_from(APP_PAYLOADS)), now)
        elif kind == "ping_dup":
            if self.ledger:
                self.app_ping(data.draw(st.sampled_from(self.ledger)).payload, now)
        elif kind == "cancel_other":
            others = self.pending()
            if others:
                self.cancel(data.draw(st.sampled_from(others), label="cancelled"))
        elif kind == "halt":
            self.halt_now()
        elif kind == "close":
            # The application closes the connection from a callback: the
            # adapter fails what is left (the waiters this Pong settled are
            # no longer the core's to hand out).
            self.close_all(data)

    def settle(self, settled: tuple[tuple[Any, float], ...], now: float, data: Any) -> None:
        """The adapter fires the waiters after the core has returned."""
        for waiter, _ in settled:
            waiter.handed_out += 1
        for waiter, round_trip in settled:
            if not waiter.called:
                waiter.fired.append(round_trip)
                self.react(data, waiter, now, closing=False)

    def close_all(self, data: Any | None) -> None:
        expected = tuple(e.waiter for e in self.ledger if e.waiter is not None)
        waiters = self.hb.close()
        assert waiters == expected
        self.retired.extend(e.payload for e in self.ledger)
        self.ledger.clear()
        self.phase = Phase.CLOSED
        self.wake_at = self.next_ping_at = None
        self.flight = None
        self.recheck_pending = False
        for waiter in waiters:
            waiter.handed_out += 1
        for waiter in waiters:
            if not waiter.called:
                waiter.failed += 1
                if data is not None:
                    self.react(data, waiter, self.now, closing=True)

    def send_keepalive(self, t: float, data: Any) -> None:
        interval, timeout = self.interval, self.timeout
        assert interval is not None and self.next_ping_at is not None
        payload = self.hb.keepalive_payload
        assert payload is not None and len(payload) == 4
        assert self.entry_of(payload) is None, "keepalive payload already in flight"
        due = self.next_ping_at
        if t - due >= interval:
            due = t
        assert self.hb.ping_lateness == t - due
        self.next_ping_at = due + interval
        entry = Entry(payload, t, None)
        self.ledger.append(entry)
        self.keepalives_sent += 1
        self.last_sent_at = t
        due_bound = self.first_due if self.keepalives_sent == 1 else None
        if due_bound is None:
            due_bound = self.last_ack + interval + EARLY_WAKE_SLACK
        assert self.first_due is not None
        self.flight = Flight(entry, due_bound=due_bound, excused=self.excused_at_ack)
        self.delivered = None
        if timeout is None:
            if self.keepalive_count() > MAX_UNANSWERED_KEEPALIVES:
                oldest = next(i for i, e in enumerate(self.ledger) if e.waiter is None)
                self.retired.append(self.ledger.pop(oldest).payload)
            self.wake_at = self.next_ping_at
        else:
            self.phase = Phase.AWAITING_PONG
            self.wake_at = self.flight.deadline = t + timeout
        # The adapter finds the Ping queued behind its own unsent data.
        if data.draw(st.booleans(), label="queued behind"):
            delivered = data.draw(st.integers(min_value=0, max_value=10**6), label="delivered")
            self.hb.queued_behind(delivered)
            self.delivered = delivered

    # -- the timer ----------------------------------------------------------

    # Hypothesis leaves out a random subset of rules in each example (swarm
    # testing): the timer, the judge and the keepalive Pong have two rules
    # each, so that few examples go without them.

    @precondition(lambda self: self.wake_at is not None)
    @rule(stall=st.one_of(st.just(0.0), small_stalls), data=st.data())
    def timer_fires(self, stall: float, data: Any) -> None:
        self.fire(stall, data)

    @precondition(lambda self: self.wake_at is not None)
    @rule(stall=stalls, data=st.data())
    def timer_fires_late(self, stall: float, data: Any) -> None:
        self.fire(stall, data)

    def fire(self, stall: float, data: Any) -> None:
        assert self.wake_at is not None
        t = max(self.now, self.wake_at + stall)
        self.excused += max(0.0, t - self.wake_at)
        self.now = t
        verdict = self.hb.wake(t)
        event(f"timer {self.phase.value} -> {verdict.value}")
        if self.phase is Phase.IDLE:
            assert verdict is Verdict.PING
            self.send_keepalive(t, data)
        elif self.phase is Phase.AWAITING_PONG:
            assert self.timeout is not None and self.flight is not None
            assert verdict is Verdict.RECHECK
            self.phase = Phase.RECHECKING
            self.flight.fired_at = t
            self.wake_at = None
            self.recheck_pending = True
        else:
            raise AssertionError(f"a timer is set in phase {self.phase}")

    @rule(fraction=st.floats(min_value=0.0, max_value=1.0))
    def early_or_spurious_wake(self, fraction: float) -> None:
        """A wake before ``wake_at`` (less the slack), or with nothing due."""
        if self.wake_at is not None:
            t = self.now + fraction * (self.wake_at - self.now)
            if t + EARLY_WAKE_SLACK >= self.wake_at:
                return
            self.now = t
        assert self.hb.wake(self.now) is Verdict.WAIT

    @rule(dt=times)
    def time_passes(self, dt: float) -> None:
        self.now = self.clamp(dt)

    # -- verdicts -----------------------------------------------------------

    @precondition(lambda self: self.recheck_pending)
    @rule(
        turn=recheck_turns,
        frame=st.sampled_from(["silent", "chatty", "mid_frame_old", "mid_frame_new"]),
        queue=st.sampled_from(["unknown", "draining", "stuck", "left"]),
        unread=st.booleans(),
        data=st.data(),
    )
    def judge(self, turn: float, frame: str, queue: str, unread: bool, data: Any) -> None:
        self.judge_with(turn, frame, queue, data, unread=unread)

    @precondition(lambda self: self.recheck_pending)
    @rule(turn=recheck_turns, data=st.data())
    def judge_silent(self, turn: float, data: Any) -> None:
        self.judge_with(turn, "silent", "unknown", data)

    @precondition(lambda self: self.phase is Phase.AWAITING_PONG)
    @rule(
        rounds=st.integers(1, 2 * MAX_GRACE_FACTOR),
        queue=st.sampled_from(["unknown", "draining", "stuck"]),
        data=st.data(),
    )
    def peer_trickles(self, rounds: int, queue: str, data: Any) -> None:
        """A peer that keeps sending one frame, slowly: deadline after deadline."""
        for _ in range(rounds):
            if self.phase is not Phase.AWAITING_PONG:
                break
            self.fire(data.draw(st.one_of(st.just(0.0), small_stalls), label="stall"), data)
            turn = data.draw(recheck_turns, label="turn")
            self.judge_with(turn, "mid_frame_old", queue, data, fresh=True)

    def judge_with(
        self,
        turn: float,
        frame: str,
        queue: str,
        data: Any,
        fresh: bool = False,
        unread: bool = False,
    ) -> None:
        self.recheck_pending = False
        t = self.clamp(turn)
        self.now = t
        flight = self.flight
        sent_at = flight.entry.sent_at if flight is not None else t
        timeout = self.timeout if self.timeout is not None else 1.0
        back = st.floats(min_value=0.0, max_value=3 * timeout)
        # What the adapter saw of the peer.
        mid_frame, began = False, 0.0
        if frame == "silent":
            received_at = sent_at - data.draw(back, label="received before the Ping")
        else:
            ago = st.floats(min_value=0.0, max_value=0.9 * timeout) if fresh else back
            received_at = max(sent_at, t - data.draw(ago, label="received ago"))
        if frame == "mid_frame_old":
            mid_frame = True
            began = sent_at + self.latency + STALL_THRESHOLD - data.draw(back, label="began")
        elif frame == "mid_frame_new":
            mid_frame = True
            began = (
                sent_at
                + self.latency
                + STALL_THRESHOLD
                + data.draw(st.floats(min_value=1e-6, max_value=3 * timeout), label="began")
            )
        base = self.delivered if self.delivered is not None else 0
        if queue == "unknown":
            delivered, queued = None, None
        elif queue == "draining":
            delivered = base + data.draw(st.integers(1, 10**6), label="more delivered")
            queued = data.draw(st.integers(1, 10**6), label="queued")
        elif queue == "stuck":
            delivered = base - data.draw(st.integers(0, min(base, 10)), label="not more")
            queued = data.draw(st.integers(1, 10**6), label="queued")
        else:
            delivered, queued = base + data.draw(st.integers(0, 10**6)), 0
        # Bytes of the peer in our receive queue, or none (0), or cannot tell.
        waiting = (
            data.draw(st.integers(1, 10**7), label="unread")
            if unread
            else data.draw(st.sampled_from([None, 0]), label="nothing unread")
        )
        evidence = Evidence(
            received_at=received_at,
            mid_frame=mid_frame,
            frame_began_at=began,
            delivered=delivered,
            queued=queued,
            unread=waiting,
        )
        verdict = self.hb.judge(t, evidence)
        if self.phase is not Phase.RECHECKING:
            # A Pong came meanwhile, or the closing handshake began.
            assert verdict is (Verdict.TIMEOUT if self.phase is Phase.TIMED_OUT else Verdict.WAIT)
            event(f"judge after {self.phase.value}")
            return
        assert flight is not None and self.timeout is not None
        assert not flight.saved
        timeout = self.timeout
        limit = sent_at + timeout * MAX_GRACE_FACTOR
        progress = None
        frame_grace = frame == "mid_frame_old" and received_at > sent_at
        if frame_grace:
            progress = received_at
        queue_grace = queue == "draining" and self.delivered is not None and delivered is not None
        if queue_grace or unread:
            progress = t
        if self.delivered is not None:
            self.delivered = delivered
        busy = progress is not None and progress + timeout > t
        if busy and t < limit:
            # Grace: the deadline moves, never past the cap.
            assert progress is not None
            assert verdict is Verdict.WAIT
            deadline = min(progress + timeout, limit)
            assert self.hb.wake_at == deadline
            assert t < deadline <= limit
            self.phase = Phase.AWAITING_PONG
            self.wake_at = flight.deadline = deadline
            flight.graced = True
            event(f"grace {frame} {queue} unread={unread}")
            return
        assert verdict is Verdict.TIMEOUT, (
            f"no grace was due ({frame}, {queue}) yet the verdict is {verdict}"
        )
        outcome = self.hb.timeout
        assert isinstance(outcome, Timeout)
        stalled = flight.fired_at - flight.deadline > STALL_THRESHOLD
        if busy:
            cause = Cause.PEER_TOO_SLOW
        else:
            cause = Cause.REACTOR_STALLED if stalled else Cause.PEER_SILENT
        assert outcome == Timeout(
            cause=cause,
            waited=t - sent_at,
            lateness=max(0.0, flight.fired_at - flight.deadline),
            idle=t - received_at,
            queued=queued,
            latency=self.latency,
            ping_interval=self.interval,
            ping_timeout=timeout,
        )
        # The bound: from the last keepalive Pong (or the start), no later
        # than interval + timeout (times the grace cap once graced), plus the
        # timer lateness and recheck turns since.
        window = timeout * (MAX_GRACE_FACTOR if flight.graced else 1)
        bound = flight.due_bound + (self.excused - flight.excused) + window
        assert t <= bound + EPS, (t, bound, flight)
        event(f"timeout {cause.value} graced={flight.graced}")
        self.phase = Phase.TIMED_OUT
        self.wake_at = self.next_ping_at = None

    @precondition(lambda self: self.phase is Phase.TIMED_OUT)
    @rule(data=st.data())
    def adapter_fails_the_connection(self, data: Any) -> None:
        # The verdict stands, whatever is judged or woken meanwhile.
        assert self.hb.judge(self.now, Evidence(received_at=self.now)) is Verdict.TIMEOUT
        assert self.hb.wake(self.now) is Verdict.WAIT
        self.close_all(data)

    # -- Pongs --------------------------------------------------------------

    @rule(
        kind=st.sampled_from(["keepalive", "in_flight", "unknown", "stale"]),
        dt=times,
        data=st.data(),
    )
    def pong(self, kind: str, dt: float, data: Any) -> None:
        self.pong_with(kind, dt, data)

    @rule(dt=times, data=st.data())
    def keepalive_pong(self, dt: float, data: Any) -> None:
        self.pong_with("keepalive", dt, data)

    def pong_with(self, kind: str, dt: float, data: Any) -> None:
        t = self.clamp(dt)
        self.now = t
        if kind == "keepalive":
            payload = self.hb.keepalive_payload
            if payload is None:
                return
        elif kind == "in_flight":
            if not self.ledger:
                return
            payload = data.draw(st.sampled_from(self.ledger)).payload
        elif kind == "stale":
            if not self.retired:
                return
            payload = data.draw(st.sampled_from(self.retired))
        else:
            payload = data.draw(st.binary(max_size=6), label="unknown payload")
        latency_before, pongs_before = self.hb.latency, self.hb.pongs
        settled = self.hb.pong_received(payload, t)
        i = self.entry_of(payload)
        if self.phase not in SETTLING or i is None:
            assert settled is None
            assert (self.hb.latency, self.hb.pongs) == (latency_before, pongs_before)
            return
        assert settled is not None
        matched = self.ledger[i]
        acknowledged, self.ledger = self.ledger[: i + 1], self.ledger[i + 1 :]
        self.retired.extend(e.payload for e in acknowledged)
        # Latency is the matched Ping's round trip; each waiter gets its own.
        assert self.hb.latency == t - matched.sent_at
        self.latency = t - matched.sent_at
        self.pongs += 1
        expected = tuple((e.waiter, t - e.sent_at) for e in acknowledged if e.waiter is not None)
        assert settled == expected
        event(f"pong settles {len(expected)} waiters, phase {self.phase.value}")
        flight = self.flight
        if flight is not None and any(e is flight.entry for e in acknowledged):
            flight.saved = True
            self.flight = None
            self.last_ack = t
            self.excused_at_ack = self.excused
            if self.phase is not Phase.CLOSING and self.timeout is not None:
                self.phase = Phase.IDLE
                assert self.next_ping_at is not None
                self.next_ping_at = self.wake_at = max(self.next_ping_at, t)
                # The next Ping is due an interval after the last Pong at most.
                assert self.interval is not None
                assert self.wake_at <= t + self.interval + EARLY_WAKE_SLACK + EPS
        self.settle(settled, t, data)

    # -- application Pings --------------------------------------------------

    @rule(
        target=waiters,
        payload=st.one_of(st.sampled_from(APP_PAYLOADS), st.just(None)),
        dt=times,
    )
    def application_ping(self, payload: bytes | None, dt: float) -> Any:
        self.now = self.clamp(dt)
        if payload is None:
            payload = self.hb.new_payload()
            assert self.entry_of(payload) is None
        waiter = self.app_ping(payload, self.now)
        return waiter if waiter is not None else Waiter(payload, self.now)

    @rule(waiter=waiters)
    def duplicate_ping(self, waiter: Waiter) -> None:
        """The same payload again while it waits: PingInFlight, nothing changes."""
        if self.entry_of(waiter.payload) is not None and self.phase in OPEN:
            size = self.hb.in_flight
            with pytest.raises(PingInFlight, match="already waiting"):
                self.hb.ping_sent(waiter.payload, self.now, Waiter(waiter.payload, self.now))
            assert self.hb.in_flight == size

    @rule(waiter=consumes(waiters))
    def cancel_ping(self, waiter: Waiter) -> None:
        self.cancel(waiter)

    @rule(waiter=waiters)
    def stale_forget(self, waiter: Waiter) -> None:
        """forget() for a waiter whose payload a later Ping may have reused."""
        if waiter.called or waiter not in self.all_waiters:
            size = self.hb.in_flight
            self.hb.forget(waiter.payload, waiter)
            assert self.hb.in_flight == size

    # -- the end ------------------------------------------------------------

    @rule(dice=st.integers(0, 3))
    def halt(self, dice: int) -> None:
        if dice:
            return  # rarer than the rest: a connection's life is mostly open
        self.halt_now()

    def halt_now(self) -> None:
        self.hb.halt()
        if self.phase in OPEN:
            self.phase = Phase.CLOSING
            self.wake_at = self.next_ping_at = None

    @rule(dice=st.integers(0, 3), data=st.data())
    def close(self, dice: int, data: Any) -> None:
        if not dice:
            self.close_all(data)

    @precondition(lambda self: self.phase is Phase.CLOSED)
    @rule(dt=times)
    def anything_after_close(self, dt: float) -> None:
        self.now += dt
        hb = self.hb
        assert hb.close() == ()
        hb.start(self.now, 1.0, 1.0)
        hb.halt()
        assert hb.wake(self.now) is Verdict.WAIT
        assert hb.judge(self.now, Evidence(received_at=self.now, mid_frame=True)) is Verdict.WAIT
        assert hb.pong_received(b"\x00\x00\x00\x01", self.now) is None
        assert hb.wake_at is None and hb.phase is Phase.CLOSED

    # -- invariants ---------------------------------------------------------

    @invariant()
    def core_matches_the_model(self) -> None:
        hb = self.hb
        assert hb.phase is self.phase
        assert hb.wake_at == self.wake_at
        assert hb.in_flight == len(self.ledger)
        assert hb.latency == self.latency and hb.pongs == self.pongs
        assert hb.accepts_pings is (self.phase in OPEN)
        flight = self.flight
        if flight is not None:
            assert hb.keepalive_payload == flight.entry.payload
        else:
            assert hb.keepalive_payload is None

    @invariant()
    def every_waiter_settles_once(self) -> None:
        for waiter in self.all_waiters:
            assert waiter.handed_out <= 1, f"{waiter} handed out twice"
            assert waiter.outcomes <= 1, f"{waiter} fired twice"
        in_ledger = [e.waiter for e in self.ledger if e.waiter is not None]
        assert self.pending() == in_ledger
        if self.phase is Phase.CLOSED:
            assert not in_ledger and self.wake_at is None

    @invariant()
    def ledger_is_bounded(self) -> None:
        keepalives = self.keepalive_count()
        if self.timeout is None:
            assert keepalives <= MAX_UNANSWERED_KEEPALIVES
            assert self.phase not in (Phase.AWAITING_PONG, Phase.RECHECKING, Phase.TIMED_OUT)
        else:
            assert keepalives <= 1

    @invariant()
    def deadline_within_the_cap(self) -> None:
        flight = self.flight
        if self.phase is Phase.AWAITING_PONG:
            assert flight is not None and self.timeout is not None and self.wake_at is not None
            sent_at = flight.entry.sent_at
            assert sent_at < self.wake_at <= sent_at + MAX_GRACE_FACTOR * self.timeout
            if not flight.graced:
                assert self.wake_at == sent_at + self.timeout
        if self.phase is Phase.IDLE and self.interval is not None and self.wake_at is not None:
            if self.keepalives_sent:
                # Never later than an interval after the last Ping's due time
                # or the last keepalive Pong.
                assert self.wake_at <= EPS + max(
                    self.last_ack, self.last_sent_at + self.interval + EARLY_WAKE_SLACK
                )
            else:
                assert self.wake_at == self.first_due

    def teardown(self) -> None:
        if self.phase is not Phase.CLOSED:
            self.close_all(None)
        for waiter in self.all_waiters:
            assert waiter.outcomes == 1, f"{waiter} reached {waiter.outcomes} outcomes"
        assert self.hb.wake_at is None
        assert self.hb.wake(self.now + 1e6) is Verdict.WAIT
        assert self.hb.wake_at is None


TestHeartbeatMachine = HeartbeatMachine.TestCase
TestHeartbeatMachine.settings = machine_settings(examples=400, steps=50)


# -- the timer wheel ------------------------------------------------------------


class WheelOwner(WheelEntry):
    """A connection on the wheel; it may put itself back when its slot comes."""

    def __init__(self, machine: WheelMachine, name: int) -> None:
        super().__init__()
        self.machine, self.name = machine, name
        #: Delays (seconds after its slot) at which it re-adds itself, one per firing.
        self.again: list[float] = []

    def wheel_fired(self) -> None:
        self.machine.fired(self)

    def __repr__(self) -> str:
        return f"Owner{self.name}"


@dataclass
class Registration:
    slot: int
    deadline: float
    #: When it was added (seconds on the clock).
    added_at: float


class WheelMachine(RuleBasedStateMachine):
    """
    Deadlines on a ``TimerWheel`` over a ``task.Clock``, added, moved,
    removed and re-added (also from inside ``wheel_fired``) in any order:

    - a deadline never fires early and at most one grid slot late (counted
      from when it was added, for a deadline already past then);
    - it fires exactly once unless replaced or removed first, and a removed
      one never; an owner has one deadline at a time (adding moves it);
    - the wheel keeps one ``DelayedCall``, never before its earliest slot,
      while any owner waits, and none once every owner is gone.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.owners = [WheelOwner(self, i) for i in range(4)]
        self.registrations: dict[WheelOwner, Registration] = {}

    @initialize(grid=st.sampled_from([0.02, 0.1, 0.25, 1 / 3, 1.0]))
    def make_wheel(self, grid: float) -> None:
        self.grid = grid
        self.wheel = TimerWheel(self.clock, self.clock.seconds, grid=grid)

    def add(self, owner: WheelOwner, deadline: float) -> None:
        now = self.clock.seconds()
        slot = self.wheel.slot_of(deadline)
        assert slot * self.grid >= deadline and slot * self.grid - deadline < self.grid + EPS
        self.wheel.add(owner, slot)
        self.registrations[owner] = Registration(slot, deadline, now)

    def fired(self, owner: WheelOwner) -> None:
        now = self.clock.seconds()
        registration = self.registrations.pop(owner, None)
        assert registration is not None, f"{owner} fired at {now} with no deadline"
        assert now >= registration.deadline, f"{owner} fired {registration.deadline - now} s early"
        latest = max(registration.deadline, registration.added_at) + self.grid + EPS
        assert now <= latest, f"{owner} fired {now - latest} s late"
        if owner.again:
            self.add(owner, now + owner.again.pop(0))

    @rule(
        owner=st.integers(0, 3),
        delay=st.one_of(
            st.floats(min_value=-2.0, max_value=5.0, allow_nan=False),
            st.sampled_from([0.0, 0.02, 0.25, 1.0]),
        ),
    )
    def add_deadline(self, owner: int, delay: float) -> None:
        """A first deadline, or a new one in place of the one it had."""
        self.add(self.owners[owner], self.clock.seconds() + delay)

    @rule(owner=st.integers(0, 3), ahead=st.integers(0, 100))
    def add_just_past_a_grid_point(self, owner: int, ahead: int) -> None:
        """The float division may round such a deadline down onto the grid point."""
        point = (math.ceil(self.clock.seconds() / self.grid) + ahead) * self.grid
        self.add(self.owners[owner], math.nextafter(point, math.inf))

    @rule(owner=st.integers(0, 3), delay=st.floats(min_value=0.0, max_value=5.0))
    def remove_then_add(self, owner: int, delay: float) -> None:
        who = self.owners[owner]
        self.remove(who)
        self.add(who, self.clock.seconds() + delay)

    def remove(self, owner: WheelOwner) -> None:
        self.wheel.remove(owner)
        self.registrations.pop(owner, None)

    @rule(owner=st.integers(0, 3))
    def remove_deadline(self, owner: int) -> None:
        who = self.owners[owner]
        self.remove(who)
        self.remove(who)  # twice is harmless

    @rule(owner=st.integers(0, 3), again=st.lists(st.floats(0.0, 3.0), max_size=2))
    def re_add_when_fired(self, owner: int, again: list[float]) -> None:
        self.owners[owner].again = list(again)

    @rule(fraction=st.floats(min_value=0.0, max_value=1.0))
    def time_passes(self, fraction: float) -> None:
        """Advance up to, but not past, the next slot's call."""
        calls = self.clock.getDelayedCalls()
        step = fraction * self.grid
        if calls:
            step = min(step, fraction * (min(c.getTime() for c in calls) - self.clock.seconds()))
        self.clock.advance(step)

    @precondition(lambda self: bool(self.clock.getDelayedCalls()))
    @rule()
    def next_slot_comes(self) -> None:
        when = min(c.getTime() for c in self.clock.getDelayedCalls())
        self.clock.advance(when - self.clock.seconds())

    @rule(owner=st.integers(0, 3))
    def owner_leaves(self, owner: int) -> None:
        who = self.owners[owner]
        who.again = []
        self.remove(who)

    @invariant()
    def one_delayed_call_at_the_earliest_slot(self) -> None:
        calls = [c.getTime() for c in self.clock.getDelayedCalls()]
        assert len(self.wheel) == len(self.registrations)
        if not self.registrations:
            assert calls == []
            return
        [call_at] = calls
        first = min(r.slot for r in self.registrations.values()) * self.grid
        # Never before the earliest deadline's slot; at it, or now if overdue.
        assert call_at >= first
        assert call_at <= max(first, self.clock.seconds()) + EPS

    def teardown(self) -> None:
        for who in self.owners:
            self.owner_leaves(who.name)
        assert self.clock.getDelayedCalls() == [] and len(self.wheel) == 0


TestWheelMachine = WheelMachine.TestCase
TestWheelMachine.settings = machine_settings(examples=200, steps=40)
