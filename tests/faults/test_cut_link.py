"""
A cut cable: our server in its own network namespace streams to a peer in
another one, joined by a veth pair; the peer's end of the link goes down.
No FIN, no RST, no Close frame can cross, and the server's send buffers are
full -- the heartbeat alone has to free the connection, while a connection
from a third namespace keeps its ping schedule.
"""

from __future__ import annotations

import time

from .support import (
    Procs,
    gaps,
    lab,
    needs_node,
    record,
    server_options,
    summary,
    tcp_sockets,
)

INTERVAL, TIMEOUT, CLOSE_TIMEOUT = 0.5, 0.5, 1.0
BOUND = INTERVAL + TIMEOUT + CLOSE_TIMEOUT
#: Scheduling slack on a loaded 2-core CI machine.
MARGIN = 0.5
#: Bytes per second streamed to the peer whose link is cut: enough to fill the
#: kernel's send buffer (up to 4 MiB here) within the bound.
STREAM = 8 * 1024 * 1024


def test_cut_link_frees_a_streaming_connection_within_the_bound_and_spares_the_others(
    procs: Procs, framing: str
) -> None:
    needs_node()
    with lab() as net:
        server_ns = net.namespace("srv")
        cut_ns = net.namespace("cut")
        other_ns = net.namespace("other")
        _, server_addr, cut_if, cut_addr = net.link(server_ns, cut_ns, 77)
        _, other_server_addr, _, other_addr = net.link(server_ns, other_ns, 78)

        server = procs.server(
            "--host", "0.0.0.0",
            *server_options(INTERVAL, TIMEOUT, CLOSE_TIMEOUT, "--stream", str(STREAM),
                            "--chunk", "65536"),
            netns=server_ns, framing=framing,
        )  # fmt: skip
        port = server.wait_for("listening")["port"]
        pid = server.wait_for("listening")["pid"]

        # The streamed-to peer reads everything and answers pings (ws "many"
        # prints no per-message lines); the other one only takes pings.
        cut_peer = procs.node_peer(
            "ws_peer.mjs", "many", f"ws://{server_addr}:{port}/stream", "--count", "1",
            netns=cut_ns,
        )  # fmt: skip
        cut_open = server.wait_for("open", path="/stream")
        other = procs.python_peer(
            "websockets_peer", "client", f"ws://{other_server_addr}:{port}/", netns=other_ns
        )
        other_open = server.wait_for("open", path="/")
        # Let a few ping rounds complete on both connections.
        time.sleep(3 * INTERVAL)
        assert server.of("timeout") == []

        net.set_link(cut_ns, cut_if, up=False)
        cut_at = time.monotonic()
        timeout = server.wait_for("timeout", conn=cut_open["conn"], timeout=BOUND + 5)
        closed = server.wait_for("close", conn=cut_open["conn"], timeout=BOUND + 5)
        freed_after = closed["t"] - cut_at

        sockets = tcp_sockets(pid)
        remotes = {s.remote[0]: s for s in sockets if s.state != "LISTEN"}
        # Keep watching the other connection for as long again.
        time.sleep(BOUND)
        ping_times = [e["t"] for e in other.of("ping")]
        other_gaps = gaps(ping_times)
        record(
            f"cut link ({framing})",
            bound=BOUND + MARGIN,
            freed_after=round(freed_after, 3),
            detected_after=round(timeout["t"] - cut_at, 3),
            cause=timeout["cause"],
            queued_at_verdict=timeout["queued"],
            close=[closed["code"], closed["reason"]],
            other_ping_gaps=summary(other_gaps),
        )

        assert freed_after < BOUND + MARGIN, (freed_after, timeout, closed)
        assert timeout["cause"] == "peer_silent"
        # The send buffers were full: megabytes queued behind the 1011 Close.
        assert timeout["queued"] is not None and timeout["queued"] > 1024 * 1024, timeout
        # Megabytes still queued: the TCP close can only be an abort.
        assert closed["wasClean"] is False
        assert "keepalive ping timeout" in closed["reason"]
        # The fd of the cut connection is gone; the other connection's is there.
        assert cut_addr not in remotes, sockets
        assert remotes[other_addr].state == "ESTABLISHED"
        # The other connection: untouched, pinged on schedule throughout.
        assert server.of("close", conn=other_open["conn"]) == []
        assert other.of("close") == []
        assert len(ping_times) >= (time.monotonic() - other_open["t"]) / INTERVAL - 2
        assert all(INTERVAL * 0.8 < gap < INTERVAL * 1.5 for gap in other_gaps), other_gaps
        assert server.of("timeout") == [timeout]
        # Its peer can never finish a closing handshake now: no need to wait.
        cut_peer.process.kill()
