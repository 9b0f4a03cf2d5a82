"""
The balancer's idle timeout, as deploy/ sets it (HAProxy's ``timeout
tunnel``, nginx's ``proxy_read_timeout``: 60 s), against clients that send
nothing for longer than that: the server's pings at its default
``ping_interval`` (20 s) keep them connected through both balancers at once.
The control, which shows the test can fail: the same clients on backends run
with ``--ping-interval off`` are cut by the balancer after its timeout.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.faults.support import NODE, PEERS, Proc, needs_node, record

from . import FULL, configs
from .conftest import StartFleet
from .support import Fleet, Group, start_balancer

HAPROXY = configs.HAProxySettings()
IDLE = {"haproxy": HAPROXY.tunnel_timeout, "nginx": configs.nginx_idle_timeout()}
#: How long the clients stay silent: past the idle timeout (twice, in the full run).
HOLD = max(IDLE.values()) * (2 if FULL else 1) + 6
PER_BACKEND = 2


def silent_client(group: Group, url: str) -> Proc:
    """Node's ``ws``: answers Pings (as any WebSocket must), sends nothing, closes after HOLD."""
    needs_node()
    assert NODE is not None
    argv = [NODE, str(PEERS / "ws_peer.mjs"), "client", url, "--duration", f"{HOLD:g}"]
    return group.json_lines("silent", argv)


def backend_of(client: Proc) -> int:
    identity = json.loads(client.wait_for("message")["data"])
    return int(identity["backend"])


def watch_closes(clients: list[Proc], timeout: float) -> dict[int, tuple[float, int]]:
    """Until every client has closed: when (time.monotonic()) and with which code."""
    closed: dict[int, tuple[float, int]] = {}
    deadline = time.monotonic() + timeout
    while len(closed) < len(clients):
        for index, client in enumerate(clients):
            if index not in closed and (close := client.of("close")):
                closed[index] = (time.monotonic(), close[0]["code"])
        if time.monotonic() > deadline:
            pytest.fail(f"{len(closed)} of {len(clients)} closed in {timeout} s")
        time.sleep(0.05)
    return closed


@pytest.mark.timeout(HOLD + 120)
def test_pings_keep_silent_clients_through_both_balancers_idle_timeouts(
    fleet: StartFleet, group: Group
) -> None:
    for kind in ("haproxy", "nginx"):
        if configs.MISSING[kind]:
            pytest.skip(configs.MISSING[kind])
    # b1 pings at the default interval; b2 and b3 send no pings at all.
    haproxy = fleet(
        "haproxy", "--ping-interval", "off", first=("--ping-interval", "20"), short=False
    )
    nginx = Fleet(haproxy.backends, start_balancer(group, "nginx", haproxy.backends), group)
    pinged = haproxy.backends[0].port
    clients = {
        kind: [silent_client(group, fleet_.url) for _ in range(3 * PER_BACKEND)]
        for kind, fleet_ in (("haproxy", haproxy), ("nginx", nginx))
    }
    started = time.monotonic()
    backends = {kind: [backend_of(c) for c in held] for kind, held in clients.items()}
    everyone = [c for held in clients.values() for c in held]
    closes = watch_closes(everyone, HOLD + 30)

    index = 0
    results: dict[str, dict[str, list[tuple[float, int]]]] = {}
    for kind in clients:
        results[kind] = {"pinged": [], "unpinged": []}
        for client_backend in backends[kind]:
            at, code = closes[index]
            index += 1
            group_name = "pinged" if client_backend == pinged else "unpinged"
            results[kind][group_name].append((round(at - started, 1), code))
        record(
            "fleet: balancer idle timeout",
            balancer=kind,
            idle_timeout=IDLE[kind],
            ping_interval=20,
            silent_for=HOLD,
            pinged=results[kind]["pinged"],
            unpinged_control=results[kind]["unpinged"],
        )
    for kind in clients:
        pinged_closes, control = results[kind]["pinged"], results[kind]["unpinged"]
        assert pinged_closes and control, (kind, backends[kind])
        # The pinged clients closed the connection themselves, after HOLD.
        assert {code for _, code in pinged_closes} == {1000}, (kind, pinged_closes)
        assert min(at for at, _ in pinged_closes) >= HOLD - 1
        # Without pings the balancer cut them (no Close frame) at its timeout.
        assert {code for _, code in control} == {1006}, (kind, control)
        for at, _ in control:
            assert IDLE[kind] - 1 <= at <= IDLE[kind] + 5, (kind, control)
