"""
A rolling restart (SIGHUP) of one backend of the fleet, a ``--workers 2``
one, under load: keepalive.js clients on all three backends and a stream of
new connections through the balancer.  Its workers are replaced one at a
time; their clients get 1001 and reconnect, and no client -- reconnecting or
new -- sees a refused connection or a failed handshake.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.support import record

from . import FULL, balancers
from .clients import Prober, on_backend, populate
from .conftest import StartFleet
from .support import Backend, Group

PER_BACKEND = 100 if FULL else 30
#: Seconds: a rolling restart of two workers (a new one starts, the old one
#: drains over --drain-spread) takes well under this here.
RESTART_TIMEOUT = 60.0
SPREAD = 2.0


def wait_for_log(backend: Backend, event: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not backend.log(keepalive_event=event):
        if time.monotonic() > deadline:
            pytest.fail(f"no {event} from {backend.name} in {timeout} s\n{backend.describe()}")
        time.sleep(0.1)
    return time.monotonic()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("balancer", balancers(("haproxy",)))
def test_a_rolling_restart_under_load_refuses_no_client(
    fleet: StartFleet, group: Group, balancer: str
) -> None:
    fleet_ = fleet(balancer, "--drain-spread", f"{SPREAD:g}", first=("--workers", "2"))
    seen = populate(group, fleet_.url, node=3 * PER_BACKEND)
    restarted = fleet_.backends[0]
    moving = on_backend(seen, restarted.port)
    old_pids = {e["pid"] for e in seen.events("open") if e["backend"] == restarted.port}
    assert len(old_pids) == 2, old_pids

    with Prober(fleet_.url, every=0.05) as prober:
        time.sleep(1.0)
        sighup = restarted.signal(signal.SIGHUP)
        done = wait_for_log(restarted, "rolling_restart_done", RESTART_TIMEOUT)
        seen.wait_all_open(30)
        time.sleep(1.0)

    closes = {who: seen.first("close", who, after=sighup) for who in moving}
    # Once the restart is done, the new connections it serves.
    restarted_pids = {
        p.pid for p in prober.probes if p.opened and p.opened > done and p.backend == restarted.port
    }
    record(
        "fleet: rolling restart of a --workers 2 backend",
        balancer=balancer,
        clients=seen.count(),
        on_restarted=len(moving),
        restart_took=round(done - sighup, 3),
        pids_before=sorted(old_pids),
        pids_after=sorted(p for p in restarted_pids if p is not None),
        probes=len(prober.probes),
        failed_probes=len(prober.failures()),
        failed_attempts=len(seen.failed_attempts()),
    )
    assert prober.failures() == [], prober.failures()
    assert seen.failed_attempts() == [], seen.failed_attempts()
    assert seen.events("error") == []
    # Every client of the old workers was told to go, and came back.
    assert {close["code"] for close in closes.values()} == {1001}
    # The restarted backend serves again, from new workers only.
    assert restarted_pids, "no new connection reached the restarted backend"
    assert not restarted_pids & old_pids
