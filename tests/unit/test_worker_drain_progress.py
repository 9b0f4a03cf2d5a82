"""
The parent kills a draining worker for stalling, not for draining long: on
a ``task.Clock``, workers whose drains (a real
:class:`~twisted_keepalive.server.shutdown.WebSocketService` on fake
connections) report their progress as a worker does, through JSON records
the parent's :class:`~twisted_keepalive.server.workers.process.WorkerProcess`
reads, and workers that report nothing or the same count.

A drain longer than the parent's bound stands for a busy machine: there the
worker's closes take longer than its spread and close timeout say.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, Logger, LogLevel, eventAsJSON, jsonFileLogObserver
from twisted.python.failure import Failure

from twisted_keepalive.server.shutdown import WebSocketService
from twisted_keepalive.server.tracking import ServerFactory
from twisted_keepalive.server.worker_main import _Parent, _Worker
from twisted_keepalive.server.workers.control import DRAIN_PROGRESS, LISTENING
from twisted_keepalive.server.workers.process import WorkerProcess, stop_all
from twisted_keepalive.server.workers.progress import DrainReporter
from twisted_keepalive.server.workers.rolling import RollingRestart
from twisted_keepalive.serving import ListeningService

from .test_drain import FakeConnection, FakeEndpoint, run_timers

#: The parent's bound in these tests, as at the defaults: spread 5 s, close
#: timeout 10 s, and 5 s more.
BOUND = 20.0


def _record(**fields: Any) -> bytes:
    # As the worker's jsonFileLogObserver writes it: RS, JSON, newline.
    event: LogEvent = {"log_format": "", "log_namespace": "twisted_keepalive", **fields}
    return b"\x1e" + eventAsJSON(event).encode() + b"\n"


def _drain_service(clock: Clock, count: int, spread: float) -> WebSocketService:
    factory = ServerFactory(None, clock)
    service = WebSocketService(factory, clock, close_timeout=10.0, drain_spread=spread)
    service.add_listener(ListeningService(FakeEndpoint(), object()))
    service.startService()
    connections = [FakeConnection(factory, clock) for _ in range(count)]
    factory.connections.update(connections)  # type: ignore[arg-type]
    return service


class _Stdout:
    """The worker's stdout: what jsonFileLogObserver writes, read by the parent."""

    def __init__(self, process: WorkerProcess) -> None:
        self._process = process

    def write(self, text: str) -> None:
        if not self._process.ended.called:
            self._process.outReceived(text.encode())

    def flush(self) -> None:
        pass


class _Child:
    """
    One worker process and the parent's view of it: what the parent writes
    to its stdin, the signals it sends, and, with ``connections``, a drain
    that reports its progress onto the worker's stdout as a worker's does.
    SIGKILL ends it at once, its connections aborted (their clients see 1006).
    """

    pid = 4242

    def __init__(self, clock: Clock, index: int = 0, connections: int = 0, spread: float = 0.0):
        self.clock = clock
        self.written: list[bytes] = []
        self.signals: list[str] = []
        self.process = WorkerProcess(index, None, lambda *_: None)
        self.process.makeConnection(self)  # type: ignore[arg-type]
        self.service = _drain_service(clock, connections, spread)
        self.connections: list[FakeConnection] = list(self.service.factory.connections)  # type: ignore[arg-type]
        stdout = jsonFileLogObserver(_Stdout(self.process))  # type: ignore[arg-type]
        self.reporter = DrainReporter(
            lambda: len(self.service.factory.connections), clock, log=Logger(observer=stdout)
        )

    # -- the transport the parent sees

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if data in (b"stop\n", b"retire\n") and self.connections:
            self.reporter.start()
            self.service.drain(grace=data == b"stop\n").addCallback(self._exit)
        elif data == b"hurry\n":
            self.service.hurry()

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)
        if name == "KILL" and not self.process.ended.called:
            self.reporter.stop()
            for connection in list(self.service.factory.connections):
                connection.abort()  # type: ignore[attr-defined]
            self.process.processEnded(Failure(error.ProcessTerminated(signal=9)))

    # -- what the worker does

    def _exit(self, _: object) -> None:
        self.reporter.stop()
        if not self.process.ended.called:
            self.process.processEnded(Failure(error.ProcessDone(0)))

    def report(self, connections: int) -> None:
        """A progress record, written by hand."""
        self.process.outReceived(_record(keepalive_event=DRAIN_PROGRESS, connections=connections))


def _stop_all(clock: Clock, *children: _Child) -> Deferred[None]:
    return Deferred.fromCoroutine(stop_all([c.process for c in children], BOUND, clock))


def _told_once_and_none_aborted(child: _Child) -> bool:
    return all(len(c.told) == 1 and not c.aborted for c in child.connections)


def test_a_worker_still_draining_past_the_bound_is_not_killed(logged: list[LogEvent]) -> None:
    clock = Clock()
    child = _Child(clock, connections=300, spread=60.0)
    stopped = _stop_all(clock, child)
    run_timers(clock, until=BOUND + 0.5)
    assert not child.signals and not stopped.called
    run_timers(clock, until=80.0)
    assert stopped.called
    assert child.signals == []
    assert child.process.exit_status == "exit status 0"
    assert _told_once_and_none_aborted(child)  # every client got its 1001
    assert not [e for e in logged if e.get("keepalive_event") == "workers_kill"]


def test_progress_reports_are_relayed_as_info_once_a_second(logged: list[LogEvent]) -> None:
    clock = Clock()
    child = _Child(clock, connections=300, spread=60.0)
    _stop_all(clock, child)
    run_timers(clock, until=80.0)
    reports = [e for e in logged if e.get("keepalive_event") == DRAIN_PROGRESS]
    assert all(e["log_level"] is LogLevel.info for e in reports)
    assert all((e["worker"], e["worker_pid"]) == (0, 4242) for e in reports)
    counts = [e["connections"] for e in reports]
    # One at once, then one a second until the drain is done, each fewer.
    assert 59 <= len(counts) <= 61
    assert counts[0] == 300
    assert all(later < earlier for earlier, later in itertools.pairwise(counts))


def test_a_worker_whose_count_stops_falling_is_killed_the_bound_after_its_last_fall(
    logged: list[LogEvent],
) -> None:
    clock = Clock()
    child = _Child(clock)
    stopped = _stop_all(clock, child)
    for second in range(40):
        # 100 connections, 10 fewer each second for 5 s, then stuck at 50.
        child.report(100 - 10 * min(second, 5))
        clock.advance(1.0)
        if second + 1 < 5 + BOUND:
            assert not child.signals, second
    assert child.signals == ["KILL"]
    assert stopped.called
    [killed] = [e for e in logged if e.get("keepalive_event") == "workers_kill"]
    assert (killed["worker"], killed["connections"], killed["seconds"]) == (0, 50, BOUND)
    assert killed["log_level"] is LogLevel.warn
    assert "no progress for 20 s (50 connections left)" in killed["why"]


def test_a_worker_that_goes_silent_mid_drain_is_killed_the_bound_after_its_last_fall() -> None:
    clock = Clock()
    child = _Child(clock)
    _stop_all(clock, child)
    for second in range(10):
        child.report(1000 - second)
        clock.advance(1.0)
    # Its last fall came at 9 s; its reactor blocked since.
    clock.advance(9.0 + BOUND - 10.0 - 0.5)
    assert not child.signals
    clock.advance(0.5)
    assert child.signals == ["KILL"]


def test_a_worker_that_never_reports_is_killed_the_bound_after_it_was_told(
    logged: list[LogEvent],
) -> None:
    clock = Clock()
    child = _Child(clock)
    stopped = _stop_all(clock, child)
    assert child.written == [b"stop\n"]
    clock.advance(BOUND - 0.5)
    assert not child.signals
    clock.advance(0.5)
    assert child.signals == ["KILL"] and stopped.called
    [killed] = [e for e in logged if e.get("keepalive_event") == "workers_kill"]
    assert killed["connections"] is None
    assert "reported no progress in the 20 s since it was told to stop" in killed["why"]


def test_a_rising_or_steady_count_is_no_progress() -> None:
    # New connections during the grace, or a worker stuck: no fall, no delay.
    clock = Clock()
    child = _Child(clock)
    _stop_all(clock, child)
    for count in [10, 10, 12, 15, 15, 15, 20, 20, 20, 20]:
        child.report(count)
        clock.advance(BOUND / 10 - 0.125)
    assert not child.signals
    clock.advance(1.25)
    assert child.signals == ["KILL"]


def test_only_the_stalled_worker_is_killed_and_the_stop_waits_for_the_other() -> None:
    clock = Clock()
    draining = _Child(clock, index=0, connections=300, spread=60.0)
    stalled = _Child(clock, index=1)
    stopped = _stop_all(clock, draining, stalled)
    run_timers(clock, until=BOUND + 0.5)
    assert (draining.signals, stalled.signals) == ([], ["KILL"])
    assert not stopped.called
    run_timers(clock, until=80.0)
    assert stopped.called and draining.signals == []
    assert _told_once_and_none_aborted(draining)


def test_hurry_past_the_old_bound_sends_the_rest_their_1001_at_once() -> None:
    clock = Clock()
    child = _Child(clock, connections=300, spread=60.0)
    stopped = _stop_all(clock, child)
    run_timers(clock, until=30.0)
    child.process.hurry()
    assert child.written == [b"stop\n", b"hurry\n"]
    run_timers(clock, until=31.0)
    assert stopped.called and child.signals == []
    assert _told_once_and_none_aborted(child)
    assert max(c.told[0] for c in child.connections) == 30.0


def test_a_hurried_worker_that_stalls_is_still_killed() -> None:
    clock = Clock()
    child = _Child(clock)
    _stop_all(clock, child)
    child.report(10)
    clock.advance(1.0)
    child.report(9)
    child.process.hurry()
    clock.advance(BOUND - 0.5)
    assert not child.signals
    clock.advance(0.5)
    assert child.signals == ["KILL"]


# -- a rolling restart's retiring worker


class _Seats:
    """One seat, its old worker, and the new one a rolling restart starts."""

    count = 1
    stopping = False

    def __init__(self, old: _Child, new: _Child) -> None:
        self.old, self.new = old, new
        self.held = old.process

    def holder(self, index: int) -> WorkerProcess | None:
        return self.held

    def start_candidate(self, index: int) -> WorkerProcess:
        self.new.process.outReceived(_record(keepalive_event=LISTENING))
        return self.new.process

    def seat(self, worker: WorkerProcess) -> WorkerProcess | None:
        previous, self.held = self.held, worker
        return previous

    def retire_bound(self) -> float:
        return BOUND


def test_a_retiring_worker_still_draining_past_the_bound_is_not_killed(
    logged: list[LogEvent],
) -> None:
    clock = Clock()
    seats = _Seats(_Child(clock, connections=300, spread=60.0), _Child(clock, index=0))
    RollingRestart(seats, clock).request()
    assert seats.old.written == [b"retire\n"]
    run_timers(clock, until=80.0)
    assert seats.old.signals == []
    assert _told_once_and_none_aborted(seats.old)
    assert [e for e in logged if e.get("keepalive_event") == "rolling_restart_done"]


def test_a_retiring_worker_that_stalls_is_killed_the_bound_after_its_last_fall(
    logged: list[LogEvent],
) -> None:
    clock = Clock()
    seats = _Seats(_Child(clock), _Child(clock, index=0))
    RollingRestart(seats, clock).request()
    seats.old.report(5)
    clock.advance(3.0)
    seats.old.report(4)
    clock.advance(BOUND - 0.5)
    assert not seats.old.signals
    clock.advance(0.5)
    assert seats.old.signals == ["KILL"]
    [killed] = [e for e in logged if e.get("keepalive_event") == "worker_retire_kill"]
    assert (killed["seconds"], killed["connections"]) == (BOUND, 4)
    assert [e for e in logged if e.get("keepalive_event") == "rolling_restart_done"]


# -- the worker's side


class _Reactor(Clock):
    running = False  # stop() is the test's business


def test_a_worker_reports_only_while_it_drains(logged: list[LogEvent]) -> None:
    reactor = _Reactor()
    service = _drain_service(reactor, 50, spread=5.0)
    worker = _Worker(reactor, service)
    reactor.advance(10.0)
    assert not [e for e in logged if e.get("keepalive_event") == DRAIN_PROGRESS]
    _Parent(worker).lineReceived(b"retire")
    run_timers(reactor, until=30.0)
    counts = [e["connections"] for e in logged if e.get("keepalive_event") == DRAIN_PROGRESS]
    # At once and each second of the 5 s spread; none before, none after.
    assert counts[0] == 50 and 5 <= len(counts) <= 6
    assert all(later < earlier for earlier, later in itertools.pairwise(counts))
    assert not service.factory.connections


def test_a_worker_with_no_connection_reports_nothing(logged: list[LogEvent]) -> None:
    reactor = _Reactor()
    reporter = DrainReporter(lambda: 0, reactor)
    reporter.start()
    reactor.pump([1.0] * 10)
    reporter.stop()
    assert not [e for e in logged if e.get("keepalive_event") == DRAIN_PROGRESS]
