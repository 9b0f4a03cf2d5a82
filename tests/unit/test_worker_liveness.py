"""
The parent's view of a worker, without processes: probes and their answers
(:class:`~twisted_keepalive.server.workers.process.WorkerProcess` fed bytes
as a worker writes them), and the verdicts of
:class:`~twisted_keepalive.server.workers.liveness.Liveness` on a
``task.Clock``.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, eventAsJSON

from twisted_keepalive.server.workers.backoff import (
    FIRST_RESTART_DELAY,
    MAX_RESTART_DELAY,
    STABLE_AFTER,
    Backoff,
)
from twisted_keepalive.server.workers.control import LISTENING, PROBE_REPLY, read_probe
from twisted_keepalive.server.workers.liveness import START_TIMEOUT, Liveness, probe_interval
from twisted_keepalive.server.workers.process import Phase, WorkerProcess


class _Pipe:
    """Stands in for the process transport: what the parent wrote to stdin."""

    pid = 4242

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.signals: list[str] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


def _record(**fields: Any) -> bytes:
    # As the worker's jsonFileLogObserver writes it: RS, JSON, newline.
    event: LogEvent = {"log_format": "", "log_namespace": "twisted_keepalive", **fields}
    return b"\x1e" + eventAsJSON(event).encode() + b"\n"


class _Worker:
    """A worker with a clock of its own: answered_at set by the test."""

    def __init__(self, clock: Clock, phase: Phase = Phase.SERVING) -> None:
        self.phase = phase
        self.answered_at = clock.seconds()
        self.probes: list[int] = []

    def probe(self, number: int) -> None:
        self.probes.append(number)


def _worker(clock: Clock) -> tuple[WorkerProcess, _Pipe]:
    worker = WorkerProcess(0, None, lambda *_: None)
    pipe = _Pipe()
    worker.makeConnection(pipe)  # type: ignore[arg-type]
    worker.answered_at = clock.seconds()
    return worker, pipe


def test_a_probe_reply_is_a_sign_of_life_and_is_not_relayed(logged: list[LogEvent]) -> None:
    worker, _ = _worker(Clock())
    before = worker.answered_at
    worker.outReceived(_record(keepalive_event=PROBE_REPLY, probe=1))
    assert worker.answered_at > before
    assert not [e for e in logged if e.get("keepalive_event") == PROBE_REPLY]


def test_a_reply_split_across_reads_still_counts() -> None:
    worker, _ = _worker(Clock())
    before = worker.answered_at
    record = _record(keepalive_event=PROBE_REPLY, probe=7)
    worker.outReceived(record[:10])
    assert worker.answered_at == before
    worker.outReceived(record[10:])
    assert worker.answered_at > before


def test_a_reply_that_arrives_after_the_kill_changes_nothing(logged: list[LogEvent]) -> None:
    worker, pipe = _worker(Clock())
    worker.kill_hung()
    silent_since = worker.answered_at
    worker.outReceived(_record(keepalive_event=PROBE_REPLY, probe=3))
    assert worker.answered_at == silent_since
    assert worker.phase is Phase.KILLED
    assert pipe.signals == ["KILL"]
    assert not [e for e in logged if e.get("keepalive_event") == PROBE_REPLY]


def test_listening_is_relayed_with_the_worker_and_fires_listening(
    logged: list[LogEvent],
) -> None:
    worker, _ = _worker(Clock())
    worker.outReceived(_record(keepalive_event=LISTENING, reactor="epoll"))
    assert worker.listening.called
    assert worker.phase is Phase.SERVING
    [relayed] = [e for e in logged if e.get("keepalive_event") == LISTENING]
    assert (relayed["worker"], relayed["worker_pid"], relayed["reactor"]) == (0, 4242, "epoll")


def test_probes_and_retire_are_lines_on_stdin() -> None:
    worker, pipe = _worker(Clock())
    worker.probe(12)
    worker.retire()
    assert pipe.written == [b"probe 12\n", b"retire\n"]
    assert read_probe(pipe.written[0]) == 12
    assert read_probe(pipe.written[1]) is None
    assert worker.phase is Phase.RETIRING


def test_stop_and_hurry_are_lines_on_stdin_not_signals() -> None:
    # A stop signal often reaches the workers directly too (Ctrl-C, systemd):
    # the parent's SIGTERM on top would be a worker's second signal.
    worker, pipe = _worker(Clock())
    worker.stop()
    worker.hurry()
    assert pipe.written == [b"stop\n", b"hurry\n"]
    assert pipe.signals == []
    assert worker.phase is Phase.STOPPING


def _liveness(clock: Clock, workers: list[Any], timeout: float = 3.0) -> list[tuple[Any, float]]:
    hung: list[tuple[Any, float]] = []
    liveness = Liveness(
        timeout, lambda: workers, lambda w, s: hung.append((w, s)), clock, now=clock.seconds
    )
    liveness.start()
    return hung


def test_a_worker_that_answers_is_never_hung() -> None:
    clock = Clock()
    worker = _Worker(clock)
    hung = _liveness(clock, [worker])
    for _ in range(100):
        clock.advance(probe_interval(3.0))
        worker.answered_at = clock.seconds()
    assert not hung
    assert len(worker.probes) == 101


def test_a_silent_worker_is_hung_after_the_timeout_and_within_one_more_interval() -> None:
    clock = Clock()
    worker = _Worker(clock)
    hung = _liveness(clock, [worker])
    while not hung:
        clock.advance(probe_interval(3.0))
    [(_, silent)] = hung
    assert 3.0 < silent <= 3.0 + probe_interval(3.0) + 1e-9


def test_retiring_and_stopping_workers_are_not_probed() -> None:
    clock = Clock()
    workers = [_Worker(clock, Phase.RETIRING), _Worker(clock, Phase.STOPPING)]
    hung = _liveness(clock, workers)
    clock.pump([probe_interval(3.0)] * 100)
    assert not hung
    assert [w.probes for w in workers] == [[], []]


def test_a_starting_worker_gets_the_start_timeout() -> None:
    clock = Clock()
    worker = _Worker(clock, Phase.STARTING)
    hung = _liveness(clock, [worker])
    clock.pump([probe_interval(3.0)] * int(START_TIMEOUT / probe_interval(3.0) - 1))
    assert not hung
    clock.pump([probe_interval(3.0)] * 3)
    assert hung


def test_a_late_round_judges_nobody() -> None:
    # The parent's own reactor was blocked past the timeout: the answers
    # that came meanwhile are unread, so this round only probes.
    clock = Clock()
    worker = _Worker(clock)
    hung = _liveness(clock, [worker])
    clock.advance(10.0)
    assert not hung
    worker.answered_at = clock.seconds()  # its answer, read after the round
    clock.advance(probe_interval(3.0))
    assert not hung


@pytest.mark.parametrize("timeout", [1.0, 3.0, 30.0, 600.0])
def test_the_probe_interval_keeps_silence_far_from_the_timeout(timeout: float) -> None:
    assert 0 < probe_interval(timeout) <= min(timeout / 3, 5.0)


def test_workers_that_keep_dying_young_wait_ever_longer_and_one_that_ran_waits_little() -> None:
    backoff = Backoff(2)
    young = [backoff.delay(0, ran=0.5) for _ in range(9)]
    assert young == [FIRST_RESTART_DELAY * 2**n for n in range(7)] + [MAX_RESTART_DELAY] * 2
    assert backoff.delay(1, ran=0.5) == FIRST_RESTART_DELAY  # each seat its own
    assert backoff.delay(0, ran=STABLE_AFTER + 1) == FIRST_RESTART_DELAY
    assert backoff.delay(0, ran=0.5) == FIRST_RESTART_DELAY
