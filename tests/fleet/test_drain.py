"""
One backend of three drained (SIGTERM with ``--drain-grace`` and
``--drain-spread``) behind the balancer, with keepalive.js clients in Node
and Chromium on it: the operator's promise is that its clients move to the
other backends without one refused handshake, without a herd, and -- behind
HAProxy, whose health check reads /readyz -- that the balancer stops sending
new clients to it before the first 1001 goes out.
"""

from __future__ import annotations

import math
import signal
import time

import pytest

from tests.faults.support import record
from twisted_keepalive.server.settings import DEFAULT_DRAIN_SPREAD

from . import FULL, balancers, configs
from .clients import CLIENT_OPTIONS, Prober, populate
from .conftest import StartFleet
from .support import Group

HAPROXY = configs.HAProxySettings()
#: The grace docs/deploy.md gives for deploy/haproxy.cfg: its checks mark a
#: backend down within inter x fall of the first 503; one more interval of
#: margin.
GRACE = HAPROXY.marks_down_within + HAPROXY.inter
SPREAD = DEFAULT_DRAIN_SPREAD
#: Clients per backend: the drained one's reconnects must fill 500 ms buckets
#: well enough for peak / mean to mean something.
PER_BACKEND = 150 if FULL else 60
BUCKET = 0.5
#: Scheduling slack on a loaded two-core machine, seconds.
SLACK = 1.0


def spread_over(times: list[float], start: float, late: float) -> tuple[float, list[int]]:
    """
    Peak / mean of ``times`` per BUCKET over the drain's spread from
    ``start``, and the counts; a time up to ``late`` past the spread (the last
    1001, the client's backoff) counts in the last bucket.
    """
    buckets = [0] * math.ceil(SPREAD / BUCKET)
    for at in times:
        offset = at - start
        assert 0 <= offset < SPREAD + late, f"a reconnect {offset:.2f} s after the first 1001"
        buckets[min(int(offset // BUCKET), len(buckets) - 1)] += 1
    return max(buckets) / (len(times) / len(buckets)), buckets


@pytest.mark.timeout(240)
@pytest.mark.parametrize("balancer", balancers(("haproxy",)))
def test_a_drained_backend_leaves_the_pool_before_its_1001s_and_its_clients_spread_out(
    fleet: StartFleet, group: Group, balancer: str
) -> None:
    fleet_ = fleet(balancer, "--drain-grace", f"{GRACE:g}", "--drain-spread", f"{SPREAD:g}")
    seen = populate(group, fleet_.url, node=3 * PER_BACKEND)
    drained = fleet_.backends[0]
    moving = {who for who, port in seen.where().items() if port == drained.port}
    assert len(moving) >= PER_BACKEND * 0.8, seen.where()

    with Prober(fleet_.url) as prober:
        time.sleep(1.0)
        sigterm = drained.signal(signal.SIGTERM)
        back = seen.wait_all_open(GRACE + SPREAD + 20, avoiding=drained.port)
        assert drained.process.wait(20) == 0, drained.describe()

    closes = {who: seen.first("close", who, after=sigterm) for who in moving}
    assert {(close["code"], close["reason"]) for close in closes.values()} == {(1001, "going away")}
    first_1001 = min(close["mono"] for close in closes.values())
    reopened = [seen.first("open", who, after=closes[who]["mono"])["mono"] for who in moving]
    # Late: the clients' first backoff, and a little.
    late = CLIENT_OPTIONS["reconnectDelay"] / 1000 + 0.4
    ratio, buckets = spread_over(reopened, first_1001, late)
    routed_late = prober.opened_on(drained.port, after=sigterm + HAPROXY.marks_down_within + SLACK)
    # After the first check that HAProxy's /readyz check would have failed.
    routed_in_grace = prober.opened_on(drained.port, after=sigterm + HAPROXY.inter)
    figures = dict(
        balancer=balancer,
        clients=seen.count(),
        on_drained=len(moving),
        grace=GRACE,
        spread=SPREAD,
        first_1001_after_sigterm=round(first_1001 - sigterm, 3),
        all_back_after_sigterm=round(back - sigterm, 3),
        reconnect_peak_to_mean=round(ratio, 2),
        reconnects_per_500ms=buckets,
        probes=len(prober.probes),
        probes_on_drained_after_detection=len(routed_late),
        probes_on_drained_after_first_check=len(routed_in_grace),
        failed_attempts=len(seen.failed_attempts()),
        failed_probes=len(prober.failures()),
    )
    if balancer == "haproxy":
        down = fleet_.balancer.marked_down(drained, timeout=1)
        figures["marked_down_after_sigterm"] = round(down - sigterm, 3)
        figures["first_1001_after_marked_down"] = round(first_1001 - down, 3)
    record("fleet: one backend drained", **figures)

    # Nobody noticed anything but a 1001 and a reconnect.
    assert seen.failed_attempts() == [], seen.failed_attempts()
    assert prober.failures() == [], prober.failures()
    assert seen.events("error") == []
    # The grace was kept, and the 1001s and reconnects followed the spread.
    assert first_1001 - sigterm >= GRACE - 0.1
    assert ratio <= 1.5, buckets
    if balancer == "haproxy":
        # /readyz took it out of the pool before any of its clients was told
        # to go, and no new client reached it after the checks' bound.
        assert down - sigterm <= HAPROXY.marks_down_within + SLACK
        assert first_1001 > down
        assert routed_late == []
    else:
        # nginx cannot read /readyz: it goes on sending new clients to the
        # draining backend throughout the grace (which serves them, and then
        # sends them their 1001 with the rest).
        assert routed_in_grace, "nginx stopped routing to the draining backend by itself?"
