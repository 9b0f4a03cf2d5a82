"""
``--worker-timeout``: a worker whose reactor stops answering the parent's
probes (SIGSTOP here, as a blocked reactor would) is killed and replaced,
and says so in the log; the other workers and their connections carry on.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from . import workers_support
from .conftest import free_port
from .workers_support import (
    CONNECTIONS,
    OpenClients,
    StartSupervisor,
    alive,
    per_worker,
    scrape,
    stopped,
    usage_error,
    wait_for_log,
    worker_of,
    worker_pids,
)

supervisor = workers_support.supervisor
clients = workers_support.clients

TIMEOUT = 2.0


def test_a_stopped_worker_is_killed_and_replaced_and_the_others_serve_on(
    supervisor: StartSupervisor, clients: OpenClients
) -> None:
    metrics_port = free_port()
    server = supervisor(
        "--worker-timeout", str(TIMEOUT), "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1"
    )
    pids = worker_pids(server, 2)
    opened = clients(server)
    wait_for_log(server, lambda events: len(events) >= CONNECTIONS, keepalive_event="open")
    on_the_other = [
        c for c in opened if worker_of(server, c.socket.getsockname()[1]) == pids[1]
    ]  # fmt: skip
    assert on_the_other
    with stopped(pids[0]):
        [hung] = wait_for_log(server, bool, 30.0, keepalive_event="worker_hung")
        assert (hung["worker"], hung["worker_pid"]) == (0, pids[0])
        assert hung["silent"] > TIMEOUT  # not killed before its time
        assert "answered no probe for" in server.output()
        replaced = wait_for_log(
            server, lambda events: len(events) >= 3, 30.0, keepalive_event="worker_listening"
        )
    assert not alive(pids[0])
    [replacement] = [e["worker_pid"] for e in replaced if e["worker_pid"] not in pids.values()]
    [crash] = server.log(keepalive_event="worker_crash")
    assert (crash["worker"], crash["status"]) == (0, "signal SIGKILL")
    # The other worker's connections never noticed.
    for client in on_the_other:
        client.send("still served")
        assert client.recv(timeout=5) == "still served"
    assert not [e for e in server.log(keepalive_event="close") if e["worker_pid"] == pids[1]]
    # New connections succeed, on the replacement and the other worker.
    for client in clients(server):
        client.send("new")
        assert client.recv(timeout=5) == "new"
    serving = {e["worker_pid"] for e in server.log(keepalive_event="open")[CONNECTIONS:]}
    assert serving == {replacement, pids[1]}
    assert len(server.log(keepalive_event="worker_hung")) == 1
    samples = scrape(metrics_port)
    assert per_worker(samples, "twisted_keepalive_worker_hung_total") == {"0": 1, "1": 0}
    assert per_worker(samples, "twisted_keepalive_worker_restarts_total") == {"0": 1, "1": 0}
    assert per_worker(samples, "twisted_keepalive_worker_pid") == {"0": replacement, "1": pids[1]}


def test_healthy_workers_are_never_killed_and_probe_answers_stay_out_of_the_log(
    supervisor: StartSupervisor,
) -> None:
    server = supervisor("--worker-timeout", "1")
    pids = worker_pids(server, 2)
    time.sleep(6)  # dozens of probe rounds at a third of a second
    assert not server.log(keepalive_event="worker_hung")
    assert not server.log(keepalive_event="worker_probe_reply")
    assert "probe" not in server.output()
    assert all(alive(pid) for pid in pids.values())


def test_worker_timeout_off_never_kills(supervisor: StartSupervisor) -> None:
    server = supervisor("--worker-timeout", "off")
    pids = worker_pids(server, 2)
    with stopped(pids[0]):
        time.sleep(4)
    assert not server.log(keepalive_event="worker_hung")
    assert alive(pids[0])
    [started] = server.log(keepalive_event="workers_start")
    assert started["worker_timeout"] is None


def test_a_stopped_parent_does_not_blame_its_workers(supervisor: StartSupervisor) -> None:
    # The parent, not the workers, stopped past the timeout: its first probe
    # round after SIGCONT must not take the unread answers for silence.
    server = supervisor("--worker-timeout", "1")
    pids = worker_pids(server, 2)
    with stopped(server.process.pid):
        time.sleep(3)
    time.sleep(3)
    assert not server.log(keepalive_event="worker_hung")
    assert all(alive(pid) for pid in pids.values())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.5", "--worker-timeout must be at least 1 second, not '0.5'"),
        ("-1", "--worker-timeout must be a positive number of seconds"),
        ("soon", "--worker-timeout must be a positive number of seconds"),
    ],
)
def test_bad_worker_timeouts_are_usage_errors(tmp_path: Path, value: str, message: str) -> None:
    assert message in usage_error(tmp_path, "--workers", "2", "--worker-timeout", value)
