"""
One backend of three killed (SIGKILL): no drain, no 1001.  Its kernel closes
its sockets, the balancer passes that on, and its clients reconnect to the
other two; a reconnect the balancer still sends to the dead one is refused
there and retried elsewhere by the balancer (HAProxy's ``retries`` with
``option redispatch``, nginx's ``proxy_next_upstream``), unseen by the
client.
"""

from __future__ import annotations

import signal
import statistics
from collections import Counter

import pytest

from tests.faults.support import record

from . import FULL, balancers
from .clients import CLIENT_OPTIONS, on_backend, populate
from .conftest import StartFleet
from .support import Group

#: The backends' --ping-interval + --ping-timeout + --close-timeout (conftest's
#: SHORT), which the clients' heartbeat mirrors: the longest a client may take
#: to notice, whether TCP tells it or not.
BOUND = 1.0 + 1.0 + 1.0
BACKOFF_CAP = CLIENT_OPTIONS["reconnectDelayMax"] / 1000
PER_BACKEND = 100 if FULL else 30
SLACK = 1.0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("balancer", balancers(("haproxy", "nginx")))
def test_the_clients_of_a_killed_backend_are_back_on_the_others_within_the_bound(
    fleet: StartFleet, group: Group, balancer: str
) -> None:
    fleet_ = fleet(balancer)
    seen = populate(group, fleet_.url, node=3 * PER_BACKEND)
    victim = fleet_.backends[0]
    moving = on_backend(seen, victim.port)
    assert moving, seen.where()

    killed = victim.signal(signal.SIGKILL)
    seen.wait_all_open(BOUND + BACKOFF_CAP + 10, avoiding=victim.port)

    closes = {who: seen.first("close", who, after=killed) for who in moving}
    noticed = [close["mono"] - killed for close in closes.values()]
    back = [seen.first("open", who, after=closes[who]["mono"])["mono"] - killed for who in moving]
    record(
        "fleet: one backend killed",
        balancer=balancer,
        clients=seen.count(),
        on_killed=len(moving),
        bound=BOUND,
        noticed_max=round(max(noticed), 3),
        noticed_median=round(statistics.median(noticed), 3),
        close_codes=dict(Counter(close["code"] for close in closes.values())),
        back_max=round(max(back), 3),
        failed_attempts=len(seen.failed_attempts()),
    )
    assert max(noticed) <= BOUND + SLACK
    assert max(back) <= BOUND + BACKOFF_CAP + SLACK
    # No 1001, no Close at all: the process could send nothing.
    assert {close["code"] for close in closes.values()} <= {1006, 4000}
    assert seen.failed_attempts() == [], seen.failed_attempts()
