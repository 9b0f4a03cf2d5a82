"""
One backend of three frozen (SIGSTOP): its kernel still accepts connections
and acknowledges bytes, so neither TCP nor the balancer's connection sees
anything wrong.  Only a heartbeat can tell: every client's keepalive.js gives
up on it (4000 "keepalive ping timeout"), HAProxy's /readyz check times out
and marks it down, and the clients reconnect to the other two.  nginx open
source has no active check: it never marks the frozen backend down by
itself (its ``proxy_read_timeout`` is 60 s), and the clients' own heartbeat
is what moves them.  Thawed (SIGCONT), the backend holds no stale connection.
(On loopback that last check does not need the server's own keepalive: the
clients' Close frames and FINs wait in the frozen process's buffers and free
its connections when it runs -- it passes with ``--ping-interval off`` too.
A host cut off the network is tests/faults/test_cut_link.py's case.)
"""

from __future__ import annotations

import signal
import statistics
import time
from collections import Counter

import pytest

from tests.faults.support import record

from . import FULL, balancers, configs
from .clients import CLIENT_OPTIONS, on_backend, populate
from .conftest import StartFleet
from .support import Backend, Group

HAPROXY = configs.HAProxySettings()
#: The backends' --ping-interval + --ping-timeout + --close-timeout (conftest's
#: SHORT), mirrored by the clients' heartbeat.
BOUND = 1.0 + 1.0 + 1.0
CONNECT_TIMEOUT = CLIENT_OPTIONS["connectTimeout"] / 1000
BACKOFF_CAP = CLIENT_OPTIONS["reconnectDelayMax"] / 1000
#: A reconnect the balancer sends to the frozen backend before it is marked
#: down hangs until the client's connect timeout, then backs off once.
BACK_WITHIN = max(BOUND, HAPROXY.frozen_down_within) + CONNECT_TIMEOUT + BACKOFF_CAP
#: nginx never marks it down: each round of reconnects (connect timeout and
#: backoff) sends one in three back to it, round robin.  Ten rounds leave a
#: client there with odds of 3^-10.
NGINX_ROUNDS = 10
BACK_WITHIN_NGINX = BOUND + NGINX_ROUNDS * (CONNECT_TIMEOUT + BACKOFF_CAP)
PER_BACKEND = 100 if FULL else 30
SLACK = 1.0


def wait_for_no_connections(backend: Backend, timeout: float) -> float:
    """Until the backend's /metrics counts no open connection; when."""
    deadline = time.monotonic() + timeout
    while (open_now := backend.connections_open()) > 0:
        if time.monotonic() > deadline:
            pytest.fail(f"{backend.name} still holds {open_now} connections\n{backend.describe()}")
        time.sleep(0.1)
    return time.monotonic()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("balancer", balancers(("haproxy",)))
def test_a_frozen_backend_is_left_by_every_client_within_the_heartbeat_bound(
    fleet: StartFleet, group: Group, balancer: str
) -> None:
    fleet_ = fleet(balancer)
    seen = populate(group, fleet_.url, node=3 * PER_BACKEND)
    frozen = fleet_.backends[0]
    moving = on_backend(seen, frozen.port)
    assert moving, seen.where()
    assert frozen.connections_open() == len(moving)

    back_within = BACK_WITHIN if balancer == "haproxy" else BACK_WITHIN_NGINX
    stopped = frozen.signal(signal.SIGSTOP)
    seen.wait_all_open(back_within + 10, avoiding=frozen.port)
    closes = {who: seen.first("close", who, after=stopped) for who in moving}
    noticed = [close["mono"] - stopped for close in closes.values()]
    back = [seen.first("open", who, after=closes[who]["mono"])["mono"] - stopped for who in moving]
    figures = dict(
        balancer=balancer,
        clients=seen.count(),
        on_frozen=len(moving),
        bound=BOUND,
        noticed_min=round(min(noticed), 3),
        noticed_median=round(statistics.median(noticed), 3),
        noticed_max=round(max(noticed), 3),
        close_reasons=dict(Counter(close["reason"] for close in closes.values())),
        back_max=round(max(back), 3),
        abandoned_attempts=len(seen.failed_attempts()),
    )
    if balancer == "haproxy":
        down = fleet_.balancer.marked_down(frozen, timeout=HAPROXY.frozen_down_within + SLACK)
        figures["marked_down_after_sigstop"] = round(down - stopped, 3)

    thawed = frozen.signal(signal.SIGCONT)
    emptied = wait_for_no_connections(frozen, timeout=BOUND + 5)
    figures["thawed_holds_none_after"] = round(emptied - thawed, 3)
    record("fleet: one backend frozen", **figures)

    # The heartbeat, not TCP, noticed: no reply within pingTimeout (keepalive.js
    # closes with 4000; ReconnectingClient's 1011 finds no reply, its abort 1006).
    assert all("keepalive ping timeout" in c["reason"] for c in closes.values()), closes
    assert min(noticed) > CLIENT_OPTIONS["pingTimeout"] / 1000 - 0.1
    assert max(noticed) <= BOUND + SLACK
    assert max(back) <= back_within + SLACK
    # Any attempt that failed was one the frozen backend swallowed: keepalive.js
    # or Autobahn gave up waiting for its 101.
    swallowed = ("keepalive connect timeout", "WebSocket opening handshake timeout")
    for attempt in seen.failed_attempts():
        assert any(why in attempt["reason"] for why in swallowed), attempt
    if balancer == "haproxy":
        assert down - stopped <= HAPROXY.frozen_down_within + SLACK
    else:
        # Passive checks only: nginx went on sending new clients to it.
        assert seen.failed_attempts(), "nginx noticed a frozen backend by itself?"
