"""
Slow but alive is not dead: a peer reading slower than we stream, and our
own reactor blocked for a while.

Already covered elsewhere (tests/interop/test_verdicts_real.py): one
responsive peer survives a 1.2 s stall right after its ping (ping_timeout
0.5 s); a silent peer under that stall is failed with cause
``reactor_stalled``; a peer sending a 3 MiB frame at 1 MiB/s is not failed.
Added here: the slow *reader*, short stalls at every phase of the ping
cycle, and one long stall over many connections at once.
"""

from __future__ import annotations

import signal
import time

from .support import Proc, Procs, needs_node, record, server_options, summary

# -- a slow reader ------------------------------------------------------------------

READ_CHUNK, READ_EVERY = 16 * 1024, 0.1  # 160 KiB/s
STREAM = 1024 * 1024  # 1 MiB/s: 6.4 times what the reader takes


def test_slow_reader_is_not_failed_while_the_data_ahead_of_our_ping_drains(
    procs: Procs, framing: str
) -> None:
    interval, timeout, duration = 0.5, 1.0, 5.0
    server = procs.server(
        *server_options(interval, timeout, 1.0, "--stream", str(STREAM)),
        framing=framing,
    )
    port = server.wait_for("listening")["port"]
    reader = procs.python_peer(
        "raw_peer", "127.0.0.1", str(port), "--path", "/stream",
        "--read-chunk", str(READ_CHUNK), "--read-every", str(READ_EVERY),
        "--duration", str(duration),
    )  # fmt: skip
    done = reader.wait_for("summary", timeout=duration + 10)
    closed = server.wait_for("close")
    timeouts = server.of("timeout")
    record(
        f"slow reader ({framing})",
        stream_bytes_per_s=STREAM,
        read_bytes_per_s=READ_CHUNK / READ_EVERY,
        ping_timeout=timeout,
        duration=duration,
        timeouts=[(t["cause"], round(t["waited"], 3), t["queued"]) for t in timeouts],
        latency=round(closed["latency"], 3),
        pings_read=done["pings_read"],
        close=[closed["code"], closed["wasClean"]],
    )
    assert timeouts == []
    assert reader.of("close", code=1011) == []
    if framing == "autobahn":
        assert closed["code"] == 1000 and closed["wasClean"], closed
    else:
        # Twisted answers the reader's Close but closes TCP only once its
        # megabytes have drained, which they never do: the close_timeout
        # abort (1 s here) is what ends it.
        assert closed["t"] - done["t"] < 1.0 + 0.5, (closed, done)
    # The first round trip waited for the data ahead of it: seconds, not ms.
    assert closed["pongs"] >= 1 and closed["latency"] > timeout


# -- a blocked reactor ------------------------------------------------------------------

INTERVAL, TIMEOUT = 0.3, 0.5
CONNECTIONS = 20


def _responsive_clients(procs: Procs, port: int, duration: float) -> Proc:
    return procs.node_peer(
        "ws_peer.mjs", "many", f"ws://127.0.0.1:{port}/", "--count", str(CONNECTIONS),
        "--duration", str(duration),
    )  # fmt: skip


def test_stalls_shorter_than_ping_timeout_at_every_phase_fail_nobody(
    procs: Procs, framing: str
) -> None:
    needs_node()
    server = procs.server(*server_options(INTERVAL, TIMEOUT, 1.0), framing=framing)
    port = server.wait_for("listening")["port"]
    stall = 0.8 * TIMEOUT
    clients = _responsive_clients(procs, port, 6.0)
    watcher = procs.python_peer("websockets_peer", "client", f"ws://127.0.0.1:{port}/")
    for n in range(CONNECTIONS + 1):
        server.wait_for("open", conn=n + 1)
    time.sleep(INTERVAL)
    # Stalls of 0.4 s separated by 0.13 s of running: over the next seconds
    # every connection has stalls starting at many phases of its ping cycle.
    blocked = 0
    started = time.monotonic()
    while time.monotonic() - started < 4.0:
        server.command(f"block {stall}")
        blocked += 1
        time.sleep(stall + 0.13)
    done = clients.wait_for("summary", timeout=15)
    watcher.signal(signal.SIGINT)
    watcher.wait_for("close")
    stats = server.stats()
    latencies = [e["latency"] for e in server.of("close")]
    record(
        f"short stalls ({framing})",
        stall=stall,
        ping_timeout=TIMEOUT,
        stalls=blocked,
        connections=CONNECTIONS + 1,
        timeouts=stats["timeouts"],
        close_codes=done["close_codes"],
        last_latency=summary(latencies),
    )
    assert sum(stats["timeouts"].values()) == 0, stats
    assert done["close_codes"] == {"1000": CONNECTIONS}
    assert watcher.wait_for("close")["code"] == 1000
    assert server.of("timeout") == []


def test_one_long_stall_spares_every_responsive_peer_and_blames_itself_for_a_silent_one(
    procs: Procs, framing: str
) -> None:
    needs_node()
    server = procs.server(*server_options(INTERVAL, TIMEOUT, 1.0), framing=framing)
    port = server.wait_for("listening")["port"]
    stall = 3 * TIMEOUT
    clients = _responsive_clients(procs, port, 4.0)
    for n in range(CONNECTIONS):
        server.wait_for("open", conn=n + 1)
    silent = procs.node_peer("ws_peer.mjs", "client", f"ws://127.0.0.1:{port}/", "--no-pong")
    silent_open = server.wait_for("open", conn=CONNECTIONS + 1)
    silent.wait_for("ping")
    # The silent peer's deadline (ping + 0.5 s) falls inside the stall, and so
    # do the deadlines and pings of all the responsive connections.
    server.command(f"block {stall}")
    blocked = server.wait_for("blocked", timeout=10)
    timeout = server.wait_for("timeout", conn=silent_open["conn"])
    silent_close = silent.wait_for("close")
    done = clients.wait_for("summary", timeout=15)
    stats = server.stats()
    record(
        f"long stall ({framing})",
        stall=stall,
        ping_timeout=TIMEOUT,
        connections=CONNECTIONS,
        silent_cause=timeout["cause"],
        silent_lateness=round(timeout["lateness"], 3),
        verdict_after_stall_end=round(timeout["t"] - blocked["t"], 4),
        timeouts=stats["timeouts"],
        close_codes=done["close_codes"],
    )
    assert timeout["cause"] == "reactor_stalled"
    assert timeout["lateness"] > stall - TIMEOUT - 0.2
    # Judged right after the stall, once the reactor had read the socket.
    assert timeout["t"] - blocked["t"] < 0.2
    assert (silent_close["code"], silent_close["reason"]) == (1011, "keepalive ping timeout")
    assert stats["timeouts"] == {"peer_silent": 0, "reactor_stalled": 1, "peer_too_slow": 0}
    assert done["close_codes"] == {"1000": CONNECTIONS}
