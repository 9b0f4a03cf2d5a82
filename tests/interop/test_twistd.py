"""
``twistd -n wskeepalive`` run as an operator would run it, talked to by peers
nobody here wrote: ``websockets`` and Node's ``ws`` (``tests/peers/``), and by
``websockets``' own client in this process where a peer script has no mode
for it (binary messages, unix sockets, Origin headers).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect, unix_connect
from websockets.typing import Origin

from tests.unit.test_web_unavailable import BLOCK_TWISTED_WEBSOCKET
from tests.unit.wire import CLOSE, TEXT, frame, parse_frames

from .conftest import StartPeer, StartServer, free_port, run_twistd

# -- the plugin and its options ----------------------------------------------


def test_twistd_lists_the_plugin(tmp_path: Path) -> None:
    result = run_twistd("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "wskeepalive" in result.stdout


def test_help_shows_every_option_with_its_unit_and_default(tmp_path: Path) -> None:
    result = run_twistd("wskeepalive", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    help_text = " ".join(result.stdout.split())
    for expected in [
        "--listen= Listen on this Twisted endpoint",
        "[default: tcp:8080]",
        "--ping-interval= Seconds between keepalive pings, or 'off'",
        "[default: 20.0",
        "--ping-timeout= Seconds to wait for the pong",
        "--close-timeout= Seconds a closing handshake may take",
        "[default: 10.0",
        "--framing= The WebSocket implementation: 'autobahn', or 'twisted'",
        "[default: autobahn]",
        "--protocol=",
        "[default: twisted_keepalive.server.echo.EchoProtocol, or "
        "twisted_keepalive.server.echo_web.EchoProtocol with --framing twisted]",
        "--allowed-origin=",
        "[default: any origin]",
        "--max-message-size= Largest message accepted, in bytes",
        "[default: 1048576]",
        "--external-url=",
        "--backlog=",
        "[default: 4096]",
        "--drain-grace= Seconds a stop keeps serving",
        "[default: 0]",
        "--drain-spread= Seconds over which a stop spreads the 1001s",
        "[default: 5.0]",
        "--demo= 'on' to serve the demo page at /",
        "[default: on]",
        "--cors-origin=",
        "[default: same origin only]",
        "--access-log= 'on' to log every plain HTTP request",
        "[default: off]",
    ]:
        assert expected in help_text


#: Bad options, each refused with one usage line: (options, the message, and
#: the message with --workers 2 where it differs: an endpoint workers cannot
#: share is refused as such first).
BAD_OPTIONS = [
    (["--ping-interval", "-1"], "--ping-interval must be a positive number of seconds"),
    (["--ping-interval", "0"], "--ping-interval must be a positive number of seconds"),
    (["--ping-interval", "soon"], "--ping-interval must be a positive number of seconds"),
    (["--ping-timeout", "nan"], "--ping-timeout must be a positive number of seconds"),
    (["--close-timeout", "off"], "--close-timeout must be a positive number of seconds"),
    (
        ["--listen", "carrier-pigeon:8080"],
        "--listen 'carrier-pigeon:8080' is not a usable",
        "cannot be shared by --workers: only tcp and tcp6 endpoints can be shared",
    ),
    (
        ["--listen", "tcp:eighty"],
        "--listen 'tcp:eighty' is not a usable endpoint",
        "--listen 'tcp:eighty' cannot be shared by --workers: the port must be "
        "a whole number from 0 to 65535, not 'eighty'",
    ),
    (
        ["--listen", "ssl:8443:privateKey=/nonexistent.pem"],
        "--listen 'ssl:8443:privateKey=",
        "cannot be shared by --workers: terminate TLS in front of the workers",
    ),
    (["--protocol", "no_such_module.Chat"], "--protocol 'no_such_module.Chat' cannot be"),
    (["--protocol", "os.path"], "must name a subclass of autobahn.twisted.websocket"),
    (
        ["--protocol", "autobahn.twisted.websocket.WebSocketClientProtocol"],
        "must name a subclass of autobahn.twisted.websocket.WebSocketServerProtocol",
    ),
    (["--max-message-size", "-1"], "--max-message-size must be a whole number"),
    (["--backlog", "0"], "--backlog must be a positive whole number"),
    (["--external-url", "http://example.com/"], "--external-url must be a ws:// or wss://"),
    (["--no-such-option"], "option --no-such-option not recognized"),
    (["--metrics", "tcp:nine"], "--metrics 'tcp:nine' is not a usable endpoint"),
    (["--browser-heartbeat", "maybe"], "--browser-heartbeat must be on or off"),
    (["--listen", "tcp:99999"], "the port must be a whole number from 0 to 65535"),
    (["--listen", "tcp:-5"], "the port must be a whole number from 0 to 65535, not '-5'"),
    (["--listen", "tcp6:port=70000"], "the port must be a whole number from 0 to 65535"),
    (
        ["--listen", "ssl:99999"],
        "the port must be a whole number from 0 to 65535",
        "cannot be shared by --workers: terminate TLS in front of the workers",
    ),
    (["--metrics", "tcp:65536"], "--metrics 'tcp:65536' is not a usable endpoint"),
    (
        ["--listen", "unix:/nonexistent/run/ws.sock"],
        "the folder /nonexistent/run does not",
        "cannot be shared by --workers: SO_REUSEPORT does not balance unix sockets",
    ),
    (
        ["--listen", "tcp:0:interface=999.1.1.1"],
        "the interface '999.1.1.1' is not an address",
        "cannot be shared by --workers: the interface must be an IPv4 or IPv6 "
        "address, not '999.1.1.1'",
    ),
    (["--listen", "tcp:0:interface=192.0.2.1"], "cannot listen on 192.0.2.1 port 0"),
    (["--drain-grace", "-1"], "--drain-grace must be a number of seconds, 0 or more"),
    (["--drain-spread", "soon"], "--drain-spread must be a number of seconds, 0 or more"),
    (["--drain-spread", "inf"], "--drain-spread must be a number of seconds, 0 or more"),
    (["--handshake-timeout", "0"], "--handshake-timeout must be a positive number of seconds"),
    (["--handshake-timeout", "off"], "--handshake-timeout must be a positive number of seconds"),
    (["--demo", "maybe"], "--demo must be on or off"),
    (["--access-log", "yes"], "--access-log must be on or off, not 'yes'"),
    (["--connection-log", "quiet"], "--connection-log must be on or off, not 'quiet'"),
    (["--connection-log", ""], "--connection-log must be on or off, not ''"),
    (["--cors-origin", "ftp://files.example.com"], "--cors-origin must be * or an origin"),
    (["--cors-origin", "https://app.example.com/js"], "--cors-origin must be * or an origin"),
    (["--framing", "wsproto"], "--framing must be one of autobahn, twisted, not 'wsproto'"),
    (
        ["--framing", "twisted", "--allowed-origin", "https://app.example.com:443"],
        "--allowed-origin is not available with --framing twisted (Twisted's",
    ),
    (
        ["--framing", "twisted", "--max-message-size", "1000"],
        "--max-message-size is not available with --framing twisted (wsproto",
    ),
    (
        ["--framing", "twisted", "--external-url", "wss://chat.example.com/"],
        "--external-url is not available with --framing twisted",
    ),
    (
        ["--framing", "twisted", "--protocol", "tests.interop.twistd_side.Shout"],
        "must name a twisted.web.websocket protocol class with a buildProtocol(request) "
        "class method, not <class 'tests.interop.twistd_side.Shout'>; it lacks "
        "buildProtocol, negotiationStarted",
    ),
    (
        ["--framing", "twisted", "--protocol", "tests.interop.twistd_side.WebShout.NOPE"],
        "--protocol 'tests.interop.twistd_side.WebShout.NOPE' cannot be imported",
    ),
    (
        ["--framing", "twisted", "--protocol", "os.path.join"],
        "must name a twisted.web.websocket protocol class",
    ),
    (
        ["--protocol", "tests.interop.twistd_side.WebShout"],
        "must name a subclass of autobahn.twisted.websocket.WebSocketServerProtocol, not "
        "<class 'tests.interop.twistd_side.WebShout'>: a twisted.web.websocket protocol "
        "is served with --framing twisted",
    ),
]

#: Every option parsed as for one process, and as for --workers: the parent
#: checks the endpoints (and each worker checks its options again).
MODES = {"one process": [], "--workers 2": ["--workers", "2"]}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("options", "message", "workers_message"),
    [(*row, None)[:3] for row in BAD_OPTIONS],
    ids=[" ".join(row[0]) for row in BAD_OPTIONS],
)
def test_bad_option_is_refused_with_one_usage_line(
    tmp_path: Path, options: list[str], message: str, workers_message: str | None, mode: str
) -> None:
    result = run_twistd("-n", "--pidfile=", "wskeepalive", *MODES[mode], *options, cwd=tmp_path)
    expected = workers_message if mode != "one process" and workers_message else message
    _assert_one_usage_line(result, expected)


def test_a_port_in_use_is_one_usage_line_for_one_process_and_for_workers(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for mode in MODES.values():
            result = run_twistd(
                "-n", "--pidfile=", "wskeepalive", *mode,
                "--listen", f"tcp:{port}:interface=127.0.0.1",
                cwd=tmp_path,
            )  # fmt: skip
            _assert_one_usage_line(
                result, f"cannot listen on 127.0.0.1 port {port}: Address already in use"
            )


def _assert_one_usage_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    # twistd's exit status for a usage error.
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    # twistd's synopsis, our hint, and the message: not the whole option list.
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 3, result.stdout
    assert lines[0] == "Usage: twistd [options]", result.stdout
    assert lines[1] == "Run with --help for the options, with units and defaults.", result.stdout
    assert message in lines[2], result.stdout


_OPERATOR_IMPORTS = """\
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted_keepalive import KeepaliveMixin
"""


@pytest.mark.parametrize(
    ("module", "message"),
    [
        pytest.param(
            "class Chat(WebSocketServerProtocol, KeepaliveMixin):\n    pass\n",
            "cannot be imported: TypeError: Chat lists KeepaliveMixin after",
            id="the library refuses the mixin after the Autobahn base",
        ),
        pytest.param(
            "import no_such_dependency\n",
            "cannot be imported: ModuleNotFoundError: No module named 'no_such_dependency'",
            id="a dependency is missing",
        ),
        pytest.param(
            "raise RuntimeError('settings.toml:\\n  no such file')\n",
            "cannot be imported: RuntimeError: settings.toml: no such file",
            id="an error of several lines",
        ),
        pytest.param(
            # What a library without the base-order check would let through:
            # type.__new__ makes the class without KeepaliveMixin's metaclass
            # looking at it.
            "Chat = type.__new__(type(KeepaliveMixin), 'Chat',"
            " (WebSocketServerProtocol, KeepaliveMixin), {'__module__': __name__})\n",
            "put KeepaliveMixin first, before the Autobahn base",
            id="the mixin after the Autobahn base, unchecked",
        ),
        pytest.param(
            "class Meta(type):\n    pass\n\n\n"
            "class Chat(WebSocketServerProtocol, metaclass=Meta):\n    pass\n",
            "cannot be given KeepaliveMixin: TypeError: metaclass conflict",
            id="a metaclass that cannot go with the mixin's",
        ),
    ],
)
def test_protocol_that_cannot_be_imported_or_created_is_a_usage_error(
    tmp_path: Path, module: str, message: str
) -> None:
    operator = tmp_path / "operator"
    operator.mkdir()
    (operator / "chat.py").write_text(_OPERATOR_IMPORTS + module)
    result = run_twistd(
        "-n", "--pidfile=", "wskeepalive", "--protocol", "chat.Chat",
        cwd=tmp_path, import_from=operator,
    )  # fmt: skip
    _assert_one_usage_line(result, message)


def test_framing_twisted_without_twisted_websocket_says_what_to_install(tmp_path: Path) -> None:
    # A Twisted before 25.5, or one without wsproto, as an operator may have.
    older = tmp_path / "older"
    older.mkdir()
    (older / "sitecustomize.py").write_text(BLOCK_TWISTED_WEBSOCKET)
    result = run_twistd(
        "-n", "--pidfile=", "wskeepalive", "--framing", "twisted", cwd=tmp_path, import_from=older
    )  # fmt: skip
    _assert_one_usage_line(
        result,
        "--framing twisted needs twisted.web.websocket (Twisted 25.5 or later, with wsproto): "
        "pip install 'twisted-keepalive[web]'",
    )
    # The default framing still serves on such a Twisted.
    assert (
        "cannot be imported"
        not in run_twistd("wskeepalive", "--help", cwd=tmp_path, import_from=older).stdout
    )


# -- talking to peers ----------------------------------------------------------


def test_echoes_text_messages(
    twistd: StartServer, framing: str, peers: StartPeer, peer_kind: str
) -> None:
    server = twistd()
    peer = peers(peer_kind, "client", server.url, "--send-every", "0.1", "--duration", "0.7")
    close = peer.wait_for("close")
    echoed = [event["data"] for event in peer.of("message")]
    assert len(echoed) >= 3
    assert echoed == [f"tick {n}" for n in range(1, len(echoed) + 1)]
    assert close["code"] == 1000


def test_echoes_binary_messages(twistd: StartServer, framing: str) -> None:
    server = twistd()
    with connect(server.url) as client:
        client.send(b"\x00\xff binary \x80")
        assert client.recv(timeout=5) == b"\x00\xff binary \x80"
        client.send("text, too")
        assert client.recv(timeout=5) == "text, too"


def test_pings_arrive_every_ping_interval(
    twistd: StartServer, framing: str, peers: StartPeer, peer_kind: str
) -> None:
    server = twistd("--ping-interval", "0.3")
    peer = peers(peer_kind, "client", server.url, "--duration", "1.9")
    peer.wait_for("close")
    times = [event["t"] for event in peer.of("ping")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # The first ping is spread over the first interval; from then on, one
    # every interval, timestamped by the peer as it parses them.
    assert len(times) >= 5, times
    assert all(0.22 < gap < 0.45 for gap in gaps), gaps


def test_silent_peer_is_closed_with_1011(
    twistd: StartServer, framing: str, peers: StartPeer, peer_kind: str
) -> None:
    server = twistd("--ping-interval", "0.3", "--ping-timeout", "0.3")
    peer = peers(peer_kind, "client", server.url, "--no-pong")
    peer.wait_for("open")
    opened_at = time.monotonic()
    close = peer.wait_for("close", timeout=5)
    assert (close["code"], close["reason"]) == (1011, "keepalive ping timeout")
    assert time.monotonic() - opened_at < 0.3 + 0.3 + 1.0
    assert len(peer.of("ping")) == 1, "one keepalive ping in flight, never a second"
    [warning] = server.log(keepalive_event="timeout")
    assert warning["log_level"].name == "warn"


def test_connections_are_logged_with_peer_close_code_reason_and_latency(
    twistd: StartServer, framing: str, peers: StartPeer
) -> None:
    server = twistd("--ping-interval", "0.2")
    peer = peers("websockets", "client", server.url, "--duration", "0.7")
    peer.wait_for("close")
    deadline = time.monotonic() + 5
    while not server.log(keepalive_event="close") and time.monotonic() < deadline:
        time.sleep(0.05)
    [opened] = server.log(keepalive_event="open")
    [closed] = server.log(keepalive_event="close")
    assert opened["peer"] == closed["peer"]
    assert opened["peer"].startswith("tcp4:127.0.0.1:")
    assert (closed["code"], closed["reason"], closed["clean"]) == (1000, "", True)
    assert 0.0 < closed["latency"] < 0.2
    assert closed["log_level"].name == "info"


def test_protocol_without_the_mixin_gets_keepalive(twistd: StartServer, peers: StartPeer) -> None:
    server = twistd("--protocol", "tests.interop.twistd_side.Shout", "--ping-interval", "0.2")
    peer = peers("websockets", "client", server.url, "--send-every", "0.2", "--duration", "1")
    peer.wait_for("close")
    assert peer.of("message")[0]["data"] == "TICK 1", "the operator's protocol answers"
    assert len(peer.of("ping")) >= 3


def test_twisted_protocol_is_served_with_keepalive_and_the_command_line_settings(
    twistd: StartServer, peers: StartPeer
) -> None:
    server = twistd(
        "--framing", "twisted",
        "--protocol", "tests.interop.twistd_side.WebShout",
        "--ping-interval", "0.2",
    )  # fmt: skip
    peer = peers("websockets", "client", server.url, "--send-every", "0.2", "--duration", "1")
    peer.wait_for("close")
    assert peer.of("message")[0]["data"] == "TICK 1", "the operator's protocol answers"
    assert len(peer.of("ping")) >= 3
    with connect(server.url) as client:
        time.sleep(0.6)  # a few 0.2 s keepalive round trips
        client.send("latency?")
        # Its transport is the keepalive's: the round trip measured, in seconds.
        assert 0.0 < float(client.recv(timeout=5)) < 1.0


def test_protocol_class_settings_apply_unless_given_on_the_command_line(
    twistd: StartServer, peers: StartPeer
) -> None:
    server = twistd("--protocol", "tests.interop.twistd_side.QuickPings")
    peer = peers("websockets", "client", server.url, "--duration", "0.9")
    peer.wait_for("close")
    times = [event["t"] for event in peer.of("ping")]
    assert len(times) >= 3, "QuickPings.ping_interval is 0.25 s; the default is 20 s"
    assert all(0.18 < b - a < 0.4 for a, b in itertools.pairwise(times))


def test_external_url_is_the_factory_url(twistd: StartServer) -> None:
    server = twistd(
        "--protocol", "tests.interop.twistd_side.Shout",
        "--external-url", "wss://chat.example.com/live",
    )  # fmt: skip
    with connect(server.url) as client:
        client.send("url?")
        assert client.recv(timeout=5) == "wss://chat.example.com/live"


def test_allowed_origin_refuses_other_origins(twistd: StartServer) -> None:
    server = twistd("--allowed-origin", "https://good.example:*")
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url, origin=Origin("https://evil.example"))
    # Autobahn answers 400 with the reason; the point is the refusal.
    assert refused.value.response.status_code == 400
    assert "origin 'https://evil.example' not allowed" in refused.value.response.reason_phrase
    with connect(server.url, origin=Origin("https://good.example")) as client:
        client.send("hello")
        assert client.recv(timeout=5) == "hello"


def test_message_over_max_message_size_fails_with_1009(twistd: StartServer) -> None:
    server = twistd("--max-message-size", "1000")
    with connect(server.url) as client:
        client.send(b"x" * 1000)
        assert client.recv(timeout=5) == b"x" * 1000
        client.send(b"x" * 1001)
        with pytest.raises(ConnectionClosedError) as closed:
            client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# -- endpoints ------------------------------------------------------------------


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_tls_endpoint_serves_wss_to_clients_that_trust_its_certificate(
    twistd: StartServer, framing: str, peers: StartPeer, peer_kind: str, tmp_path: Path
) -> None:
    key, cert = _self_signed_certificate(tmp_path)
    port = free_port()
    server = twistd(
        "--ping-interval", "0.2",
        listen=f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )  # fmt: skip
    assert server.url.startswith("wss://")
    trust = {"SSL_CERT_FILE": str(cert), "NODE_EXTRA_CA_CERTS": str(cert)}
    peer = peers(
        peer_kind, "client", server.url, "--send-every", "0.2", "--duration", "0.7", **trust
    )
    close = peer.wait_for("close")
    assert peer.of("message")[0]["data"] == "tick 1"
    assert peer.of("ping"), "keepalive runs over TLS too"
    assert close["code"] == 1000
    untrusting = peers(peer_kind, "client", server.url)
    assert "certificate" in untrusting.wait_for("error")["error"].lower()


def test_unix_socket_endpoint(twistd: StartServer, framing: str, tmp_path: Path) -> None:
    path = tmp_path / "ws.sock"
    twistd("--ping-interval", "0.2", "--ping-timeout", "0.2", listen=f"unix:{path}")
    with unix_connect(str(path), "ws://localhost/") as client:
        client.send("over a unix socket")
        assert client.recv(timeout=5) == "over a unix socket"
        # The client answers pings inside recv(): still open after several
        # intervals, when a missing pong would have failed it in 0.4 s, means
        # the keepalive round trips work over the socket.
        with pytest.raises(TimeoutError):
            client.recv(timeout=1.0)


def _listen_backlog(port: int) -> int:
    ss = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    )
    # For a listening socket, ss shows the backlog as Send-Q.
    [line] = ss.stdout.strip().splitlines()
    return int(line.split()[2])


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (Debian's iproute2) is not installed")
def test_backlog_defaults_to_4096(twistd: StartServer) -> None:
    server = twistd()
    assert server.port is not None
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert _listen_backlog(server.port) == min(4096, somaxconn)


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (Debian's iproute2) is not installed")
def test_backlog_option_applies_unless_the_endpoint_sets_one(twistd: StartServer) -> None:
    own = free_port()
    server = twistd(
        "--backlog", "100",
        "--listen", f"tcp:{own}:interface=127.0.0.1:backlog=64",
    )  # fmt: skip
    assert server.port is not None
    assert _listen_backlog(server.port) == 100
    assert _listen_backlog(own) == 64


# -- shutdown -----------------------------------------------------------------


def test_sigterm_closes_peers_with_1001_and_exits_0(
    twistd: StartServer, framing: str, peers: StartPeer, peer_kind: str
) -> None:
    server = twistd("--drain-spread", "0")
    clients = [peers(peer_kind, "client", server.url) for _ in range(3)]
    for client in clients:
        client.wait_for("open")
    started = time.monotonic()
    assert server.stop() == 0, server.output()
    # The peers answer the Close at once: no waiting for the 10 s close timeout.
    assert time.monotonic() - started < 3.0
    for client in clients:
        close = client.wait_for("close")
        assert (close["code"], close["reason"]) == (1001, "going away")
    assert len(server.log(keepalive_event="close", code=1001)) == 3


def _open_without_ever_answering(port: int) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16))
    raw.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += raw.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response
    return raw


def test_a_message_crossing_the_1001_is_dropped_and_the_closing_handshake_completes(
    twistd: StartServer,
    framing: str,
) -> None:
    server = twistd()
    assert server.port is not None
    raw = _open_without_ever_answering(server.port)
    server.process.send_signal(signal.SIGTERM)
    received = b""
    while len(received) < 2 or len(received) < 2 + (received[1] & 0x7F):
        chunk = raw.recv(4096)
        assert chunk, "twistd closed TCP without a Close frame"
        received += chunk
    [(opcode, close)] = parse_frames(received)
    assert (opcode, close) == (CLOSE, (1001).to_bytes(2, "big") + b"going away")
    # Sent before the client saw the server's Close, it arrives after it; then
    # the client answers the Close, as it should.
    raw.sendall(frame(TEXT, b"crossing the close") + frame(CLOSE, close))
    after = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := raw.recv(4096):
            after += chunk
    raw.close()
    assert server.process.wait(15) == 0, server.output()
    assert after == b"", "nothing may be sent after a Close: no echo"
    [closed] = server.log(keepalive_event="close")
    assert (closed["code"], closed["clean"]) == (1001, True)
    assert "Unhandled Error" not in server.output()


# Autobahn only: Twisted's framing closes TCP as soon as its Close has left,
# without waiting for the peer's, so a peer that reads but never answers is
# not held open there (the abort bounds a peer that stops reading instead).
def test_sigterm_aborts_peers_that_never_answer_the_close_after_close_timeout(
    twistd: StartServer,
) -> None:
    server = twistd("--close-timeout", "0.5")
    assert server.port is not None
    raw = _open_without_ever_answering(server.port)
    started = time.monotonic()
    assert server.stop() == 0, server.output()
    elapsed = time.monotonic() - started
    received = b""
    try:
        while chunk := raw.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass  # aborted: what the server wrote before the abort arrived first
    raw.close()
    [(opcode, payload)] = parse_frames(received)
    assert (opcode, int.from_bytes(payload[:2], "big"), payload[2:]) == (
        CLOSE,
        1001,
        b"going away",
    )
    assert 0.45 < elapsed < 0.5 + 1.0, elapsed
    [aborting] = server.log(keepalive_event="shutdown_abort")
    assert aborting["count"] == 1
