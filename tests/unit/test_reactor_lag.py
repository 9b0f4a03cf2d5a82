"""
``ReactorLag``: how late the reactor runs its timers, for the metrics.  (The
timeout and latency hooks and counters are tested on both framings in
``test_behaviour_edges.py``.)
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from twisted_keepalive import ReactorLag


def test_reactor_lag_measures_how_late_timers_run() -> None:
    clock = Clock()
    lag = ReactorLag(clock, interval=0.5, now=clock.seconds)
    lag.start()
    clock.advance(0.5)
    assert lag.last == 0.0
    clock.advance(2.0)  # the reactor was blocked for 1.5 s past the due time
    assert lag.last == pytest.approx(1.5)
    assert lag.take_worst() == pytest.approx(1.5)
    clock.advance(0.5)
    assert lag.take_worst() == 0.0
    lag.stop()
    assert clock.getDelayedCalls() == []
