"""
Hostile input from a raw RFC 6455 client (tests/peers/raw_peer.py): floods
of unsolicited Pongs and of Pings, Pongs with the wrong payload, a Ping
longer than a control frame may be.  For each: how the connection ends
(RFC 6455), the server's memory (RSS of the server process, sampled during
the attack), and a well-behaved ``websockets`` client on the same server
that must keep getting its Pings on schedule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .support import Event, Proc, Procs, gaps, record, rss_kib, server_options, summary

INTERVAL, TIMEOUT, CLOSE_TIMEOUT = 0.3, 0.5, 1.0
BOUND = INTERVAL + TIMEOUT + CLOSE_TIMEOUT
ATTACK = 3.0  # seconds the hostile peer runs
#: What a hostile connection may cost the server, KiB of RSS.
MEMORY_BUDGET = 16 * 1024
#: Frames per second of a flood from a peer that also answers our Pings.  Its
#: real Pong travels in the same TCP stream as the flood: a flood faster than
#: the server parses fills the socket buffers, and the Pong then waits behind
#: them for longer than the Pong timeout -- a true verdict, but not what these
#: tests are about.  A server on a loaded two-core machine parses well over
#: 20,000 frames a second; 10,000 keeps the stream short and is still a flood.
FLOOD_RATE = "10000"


@dataclass
class Attack:
    server: Proc
    hostile: Proc
    watcher: Proc
    started: float
    rss_before: int
    rss_peak: int
    summary: Event
    server_close: Event

    def watcher_gaps(self) -> list[float]:
        return gaps(e["t"] for e in self.watcher.of("ping") if e["t"] >= self.started)


def attack(
    procs: Procs,
    *hostile_args: str,
    duration: float = ATTACK,
    ping_timeout: float = TIMEOUT,
    framing: str = "autobahn",
) -> Attack:
    """Run the hostile peer against our server, next to a well-behaved watcher."""
    server = procs.server(*server_options(INTERVAL, ping_timeout, CLOSE_TIMEOUT), framing=framing)
    listening = server.wait_for("listening")
    port, pid = listening["port"], listening["pid"]
    watcher = procs.python_peer("websockets_peer", "client", f"ws://127.0.0.1:{port}/")
    server.wait_for("open", conn=1)
    time.sleep(2 * INTERVAL)
    rss_before = rss_kib(pid)
    started = time.monotonic()
    hostile = procs.python_peer(
        "raw_peer", "127.0.0.1", str(port), "--duration", str(duration), "--quiet-pings",
        *hostile_args,
    )  # fmt: skip
    peak = rss_before
    while not hostile.of("summary") and time.monotonic() - started < duration + BOUND + 10:
        peak = max(peak, rss_kib(pid))
        time.sleep(0.1)
    done = hostile.wait_for("summary")
    server_close = server.wait_for("close", conn=2, timeout=BOUND + 5)
    # The watcher is watched for the whole attack, and a little after it.
    time.sleep(max(0.0, started + duration - time.monotonic()) + 2 * INTERVAL)
    result = Attack(server, hostile, watcher, started, rss_before, peak, done, server_close)
    assert server.of("close", conn=1) == [], "the well-behaved client was disconnected"
    return result


def assert_closed_normally(result: Attack) -> None:
    """The hostile peer's own Close 1000 ended its connection."""
    close = result.server_close
    assert close["code"] == 1000, close


def assert_watcher_on_schedule(result: Attack) -> None:
    watcher_gaps = result.watcher_gaps()
    assert len(watcher_gaps) >= 3
    # The schedule runs on nominal times: a Ping the busy reactor sent late is
    # followed by one on time, so a gap may be shorter than the interval.
    assert all(INTERVAL * 0.6 < gap < INTERVAL * 1.6 for gap in watcher_gaps), watcher_gaps


def report(name: str, result: Attack, **extra: object) -> None:
    record(
        name,
        rss_growth_kib=result.rss_peak - result.rss_before,
        frames_sent=result.summary["frames_sent"],
        pongs_read=result.summary["pongs_read"],
        server_close=[result.server_close["code"], result.server_close["reason"]],
        hostile_close=[(e["code"], e["reason"]) for e in result.hostile.of("close")],
        closed_after=round(result.server_close["t"] - result.started, 3),
        timeouts=[(e["cause"], round(e["waited"], 3)) for e in result.server.of("timeout")],
        watcher_gaps=summary(result.watcher_gaps()),
        **extra,
    )


def test_unsolicited_pong_flood_is_ignored_and_costs_no_memory(
    procs: Procs, framing: str
) -> None:
    result = attack(procs, "--flood", "pong", "--flood-rate", FLOOD_RATE, framing=framing)
    report("unsolicited pong flood", result)
    # Unsolicited Pongs are allowed (RFC 6455 5.5.3) and change nothing: the
    # peer answers our real Pings, so it stays until it closes with 1000.
    assert result.server.of("timeout") == []
    assert_closed_normally(result)
    assert result.server_close["pongs"] >= ATTACK / INTERVAL - 2
    assert result.summary["frames_sent"] > 1000
    assert result.rss_peak - result.rss_before < MEMORY_BUDGET
    assert_watcher_on_schedule(result)


def test_ping_flood_from_a_reading_peer_is_answered_pong_for_ping(
    procs: Procs, framing: str
) -> None:
    result = attack(procs, "--flood", "ping", "--flood-rate", FLOOD_RATE, framing=framing)
    report(f"ping flood, peer reads ({framing})", result)
    sent, answered = result.summary["frames_sent"], result.summary["pongs_read"]
    # Autobahn answers every Ping with its Pong (RFC 6455 5.5.2); a server
    # may also answer only the latest of the Pings it has not answered yet
    # (5.5.3), so only "answered, many times" is asserted.
    assert sent > 1000
    assert answered > 1000
    if framing == "autobahn":
        assert result.server.of("timeout") == []
        assert_closed_normally(result)
    else:
        # wsproto parses a frame several times slower than Autobahn: on a
        # busy machine the flood outruns it, the peer's Pong to our Ping
        # waits behind its own unread Pings, and the flooder may be failed
        # like any peer whose Pong did not arrive (docs/framings.md).  The
        # well-behaved watcher must not be: it is asserted below.
        for timeout in result.server.of("timeout"):
            assert timeout["conn"] == 2, timeout
    assert result.rss_peak - result.rss_before < MEMORY_BUDGET
    assert_watcher_on_schedule(result)


def test_pongs_with_the_wrong_payload_are_ignored_and_the_peer_is_failed_with_1011(
    procs: Procs, framing: str
) -> None:
    result = attack(procs, "--answer", "wrong", framing=framing)
    report("wrong-payload pongs", result)
    [timeout] = result.server.of("timeout")
    assert timeout["cause"] == "peer_silent"
    # The first keepalive Ping goes out one interval in; its deadline passes.
    assert result.hostile.wait_for("close")["code"] == 1011
    assert result.hostile.wait_for("close")["reason"] == "keepalive ping timeout"
    assert result.server_close["t"] - result.started < INTERVAL + TIMEOUT + 0.5
    assert_watcher_on_schedule(result)


def test_a_126_byte_ping_is_a_protocol_error_and_autobahn_drops_the_connection(
    procs: Procs,
) -> None:
    result = attack(procs, "--big-ping")
    report("126-byte ping", result)
    # Autobahn fails the connection for the protocol error (1002) the way its
    # default failByDrop says: TCP is aborted at once, no Close frame.
    assert result.server_close["code"] == 1006
    assert "control frame" in result.server_close["reason"].lower() or (
        "payload" in result.server_close["reason"].lower()
    ), result.server_close
    assert result.server_close["wasClean"] is False
    assert result.hostile.of("close") == []
    assert result.hostile.of("eof")
    assert result.server_close["t"] - result.started < 1.0
    assert result.server.of("timeout") == []
    assert_watcher_on_schedule(result)


def test_peer_always_mid_frame_but_never_answering_is_failed_within_the_usual_bound(
    procs: Procs, framing: str
) -> None:
    # A 2000-byte message every 50 ms, each sent in two halves: a frame is
    # always in progress, and a frame ends every 50 ms.
    result = attack(procs, "--answer", "none", "--trickle", "2000", "--trickle-every", "0.05",
                    duration=ATTACK + 3, framing=framing)  # fmt: skip
    report("never answers, always mid-frame", result)
    [timeout] = result.server.of("timeout")
    assert timeout["cause"] == "peer_silent", timeout
    assert result.server_close["t"] - result.started < BOUND + 0.5


def test_ping_flood_from_a_peer_that_never_reads_costs_bounded_memory(
    procs: Procs, framing: str
) -> None:
    # A long ping_timeout keeps the heartbeat out of it during the attack:
    # what is measured is the cost of the Pongs alone.  Autobahn's adapter
    # paces its Pongs (autobahn/pongs.py), so it faces the flood at full
    # speed.  Twisted's framing queues one Pong per Ping where no adapter can
    # pace it (docs/framings.md): its memory grows with the flood's volume,
    # so its flood is held to a volume the budget covers on any machine.
    rate = [] if framing == "autobahn" else ["--flood-rate", "20000"]
    result = attack(procs, "--flood", "ping", "--no-read", *rate, ping_timeout=10.0,
                    framing=framing)  # fmt: skip
    report("ping flood, peer never reads", result)
    assert_watcher_on_schedule(result)
    assert result.rss_peak - result.rss_before < MEMORY_BUDGET
