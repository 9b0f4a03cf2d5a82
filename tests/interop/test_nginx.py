"""
The promise keepalive exists for, through a real proxy: Debian's nginx with
``proxy_read_timeout 1s`` in front of ``twistd wskeepalive`` cuts a connection
that carries no traffic for a second; the server's pings keep an idle client
connected for as long as it likes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import StartPeer, StartServer, free_port, wait_until_accepting

# Debian installs it in /usr/sbin, which is not on every user's PATH.
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx (Debian's nginx package) is missing")

PROXY_READ_TIMEOUT = 1.0

_CONFIG = """\
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout {timeout}s;
            proxy_send_timeout {timeout}s;
        }}
    }}
}}
"""

StartProxy = Callable[[int], str]


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[StartProxy]:
    """Start nginx in front of a backend port, with its own config; its ws:// URL."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(backend: int) -> str:
        assert NGINX is not None
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        port = free_port()
        config = prefix / "nginx.conf"
        config.write_text(
            _CONFIG.format(
                # As root, nginx would run its worker as nobody, who cannot
                # enter pytest's private temporary directory.
                user="user root;" if os.geteuid() == 0 else "",
                prefix=prefix,
                port=port,
                backend=backend,
                timeout=int(PROXY_READ_TIMEOUT),
            )
        )
        process = subprocess.Popen(
            [NGINX, "-c", str(config), "-p", str(prefix), "-e", str(prefix / "error.log"),
             "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        processes.append(process)
        wait_until_accepting(
            ("127.0.0.1", port),
            lambda: process.poll() is None,
            lambda: (prefix / "error.log").read_text(errors="replace"),
        )
        return f"ws://127.0.0.1:{port}/"

    yield start

    for process in processes:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_keepalive_holds_an_idle_client_through_nginx(
    twistd: StartServer, framing: str, nginx: StartProxy, peers: StartPeer, peer_kind: str
) -> None:
    server = twistd("--ping-interval", "0.3", "--ping-timeout", "1")
    assert server.port is not None
    url = nginx(server.port)
    idle = 3.5 * PROXY_READ_TIMEOUT
    peer = peers(peer_kind, "client", url, "--duration", str(idle))
    close = peer.wait_for("close", timeout=idle + 5)
    # The client closed it itself, after idling well past nginx's timeout.
    assert close["code"] == 1000
    assert len(peer.of("ping")) >= 8


def test_without_keepalive_nginx_cuts_the_idle_client(
    twistd: StartServer, nginx: StartProxy, peers: StartPeer, peer_kind: str
) -> None:
    server = twistd("--ping-interval", "off")
    assert server.port is not None
    url = nginx(server.port)
    peer = peers(peer_kind, "client", url)
    peer.wait_for("open")
    opened_at = time.monotonic()
    close = peer.wait_for("close", timeout=10)
    elapsed = time.monotonic() - opened_at
    assert close["code"] == 1006, "nginx drops TCP; no Close frame"
    assert PROXY_READ_TIMEOUT * 0.8 < elapsed < PROXY_READ_TIMEOUT + 2.0
    assert peer.of("ping") == []
