"""
The browser half of the heartbeat, end to end: ``twistd wskeepalive`` serves
``/keepalive.js`` and the demo page at ``/``, and headless Chromium (Debian's
``/usr/bin/chromium``, driven by ``playwright-core`` through
``tests/peers/browser_demo.mjs``) runs the page's ``KeepaliveSocket`` against
it while the test freezes and thaws the server with SIGSTOP and SIGCONT.

Set ``UPDATE_DEMO_SCREENSHOT=1`` to save the demo page's screenshot as
``docs/demo.png``.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.sync.client import connect

from tests.realpeers import NODE, NODE_PEERS_READY, PEERS

from .conftest import REPO, STARTUP_TIMEOUT, Event, StartServer, run_twistd, subprocess_env

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
BROWSER_MISSING = (
    "needs Node.js, Debian's chromium (apt-get install chromium) and playwright-core "
    "(npm ci in tests/peers)"
)
BROWSER_READY = (
    NODE_PEERS_READY and CHROMIUM.exists() and (PEERS / "node_modules" / "playwright-core").is_dir()
)

# The page's settings, in seconds here and milliseconds in its URL: short, so
# that the whole outage fits in a few seconds.
PING_INTERVAL = 0.25
PING_TIMEOUT = 0.5
CONNECT_TIMEOUT = 0.5
RECONNECT_DELAY = 0.1
RECONNECT_DELAY_MAX = 1.0
#: What the test's own view adds to the page's: the driver polls the page
#: every 25 ms, and processes on a busy 2-core machine get scheduled late.
MARGIN = 0.5


def _static(name: str) -> bytes:
    return resources.files("twisted_keepalive").joinpath("static", name).read_bytes()


def _get(port: int, path: str) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


# -- served to plain GETs ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name", "content_type"),
    [
        ("/", "demo.html", "text/html; charset=utf-8"),
        ("/?pingInterval=1000", "demo.html", "text/html; charset=utf-8"),
        ("/keepalive.js", "keepalive.js", "text/javascript; charset=utf-8"),
    ],
)
def test_plain_get_serves_the_demo_page_and_the_module(
    twistd: StartServer, framing: str, path: str, name: str, content_type: str
) -> None:
    server = twistd()
    assert server.port is not None
    response, body = _get(server.port, path)
    assert response.status == 200
    assert body == _static(name)
    assert response.getheader("Content-Type") == content_type
    assert response.getheader("Content-Length") == str(len(body))
    assert response.getheader("Cache-Control") == "no-cache"


@pytest.mark.parametrize("path", ["/index.html", "/static/keepalive.js", "/favicon.ico"])
def test_plain_get_of_any_other_path_is_404(
    twistd: StartServer, framing: str, path: str
) -> None:
    server = twistd()
    assert server.port is not None
    response, body = _get(server.port, path)
    assert response.status == 404
    assert response.getheader("Content-Length") == str(len(body))


# -- the heartbeat switch --------------------------------------------------------


def test_twistd_answers_browser_heartbeats_by_default(twistd: StartServer, framing: str) -> None:
    server = twistd()
    with connect(server.url) as client:
        client.send("\x00wsk1 ping abc-1")
        assert client.recv(timeout=5) == "\x00wsk1 pong abc-1"
        client.send("hello")
        assert client.recv(timeout=5) == "hello"


def test_browser_heartbeat_off_passes_them_to_the_protocol(
    twistd: StartServer, framing: str
) -> None:
    server = twistd("--browser-heartbeat", "off")
    with connect(server.url) as client:
        client.send("\x00wsk1 ping abc-1")
        assert client.recv(timeout=5) == "\x00wsk1 ping abc-1"  # echoed, like any message


def test_browser_heartbeat_takes_only_on_or_off(tmp_path: Path) -> None:
    result = run_twistd(
        "-n", "--pidfile=", "wskeepalive", "--browser-heartbeat", "maybe", cwd=tmp_path
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.endswith("--browser-heartbeat must be on or off, not 'maybe'")


# -- headless Chromium -----------------------------------------------------------


class Browser:
    """``browser_demo.mjs`` running: the events it printed, and its commands."""

    def __init__(self, process: subprocess.Popen[str], stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self.events: list[Event] = []
        self._lines: queue.Queue[Event | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self._lines.put(json.loads(line))
        self._lines.put(None)

    def wait_for(
        self, event: str, timeout: float = STARTUP_TIMEOUT, count: int = 1, **fields: Any
    ) -> Event:
        """The ``count``-th event named ``event`` with these fields, printed or to come."""
        deadline = time.monotonic() + timeout
        while True:
            found = [
                e
                for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]
            if len(found) >= count:
                return found[count - 1]
            try:
                printed = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {event!r} #{count} from the page in {timeout} s: {self.events}")
            if printed is None:
                self._lines.put(None)
                pytest.fail(
                    f"the browser driver exited before {event!r} #{count}: {self.events}\n"
                    f"{self.stderr_path.read_text(errors='replace')}"
                )
            self.events.append(printed)

    def of(self, event: str) -> list[Event]:
        return [e for e in self.events if e.get("event") == event]

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """``browser(URL)`` opens URL in headless Chromium; closed at the end."""
    if not BROWSER_READY:
        pytest.skip(BROWSER_MISSING)
    assert NODE is not None
    started: list[Browser] = []

    def start(url: str) -> Browser:
        stderr_path = tmp_path / f"browser-{len(started) + 1}.err"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [NODE, str(PEERS / "browser_demo.mjs"), url],
                env=subprocess_env(CHROMIUM=str(CHROMIUM)),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        started.append(Browser(process, stderr_path))
        return started[-1]

    yield start

    for each in started:
        try:
            each.command("quit")
            each.process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            each.process.kill()
            each.process.wait()


def test_demo_page_notices_a_frozen_server_at_once_and_reconnects_when_it_thaws(
    twistd: StartServer, framing: str, browser: Any, tmp_path: Path
) -> None:
    server = twistd()
    query = urlencode(
        {
            "pingInterval": int(PING_INTERVAL * 1000),
            "pingTimeout": int(PING_TIMEOUT * 1000),
            "connectTimeout": int(CONNECT_TIMEOUT * 1000),
            "reconnectDelay": int(RECONNECT_DELAY * 1000),
            "reconnectDelayMax": int(RECONNECT_DELAY_MAX * 1000),
        }
    )
    page: Browser = browser(f"http://127.0.0.1:{server.port}/?{query}")
    loaded = page.wait_for("loaded")
    assert (loaded["status"], loaded["content_type"]) == (200, "text/html; charset=utf-8")

    # Healthy: round trips come back every interval, and nothing is closed.
    page.wait_for("open", connection=1)
    page.wait_for("latency", count=6)
    assert all(0 <= e["latency"] < 1000 * PING_INTERVAL for e in page.of("latency"))

    os.kill(server.process.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        close = page.wait_for("close", timeout=5)
        noticed = time.monotonic() - stopped_at
        assert page.of("close") == [close], "closed before the server froze"
        assert (close["code"], close["reason"]) == (4000, "keepalive ping timeout")
        assert noticed < PING_INTERVAL + PING_TIMEOUT + MARGIN
        # On the page's clock: closed pingTimeout after the heartbeat that got
        # no reply, so between pingTimeout and pingInterval + pingTimeout
        # after the last reply (plus a timer's lateness).
        last_reply = [e for e in page.of("latency") if e["t"] < close["t"]][-1]
        silence = (close["t"] - last_reply["t"]) / 1000
        assert PING_TIMEOUT - 0.01 <= silence <= PING_INTERVAL + PING_TIMEOUT + 0.1

        # Still frozen: attempts to reconnect are abandoned at connectTimeout.
        retry_window = RECONNECT_DELAY_MAX + CONNECT_TIMEOUT + MARGIN
        page.wait_for("close", timeout=retry_window, reason="keepalive connect timeout")
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    thawed_at = time.monotonic()

    page.wait_for("open", connection=2, timeout=RECONNECT_DELAY_MAX + CONNECT_TIMEOUT + MARGIN)
    reconnected = time.monotonic() - thawed_at
    replies_before = len([e for e in page.of("latency") if e["t"] < close["t"]])
    page.wait_for("latency", count=replies_before + 8, timeout=5)
    # The demo sends one application message per connection and the echo
    # server returns it: it arrives untouched, and no heartbeat ever does.
    echo = json.dumps({"hello": "from the demo page", "connection": 2}, separators=(",", ":"))
    page.wait_for("message", data=echo)
    assert not [e for e in page.of("message") if e["data"].startswith("\x00")]
    assert not page.of("pageerror")

    screenshot = tmp_path / "demo.png"
    page.command(f"screenshot {screenshot}")
    page.wait_for("screenshot")
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    if os.environ.get("UPDATE_DEMO_SCREENSHOT"):
        shutil.copyfile(screenshot, REPO / "docs" / "demo.png")
    print(f"closed {noticed:.3f} s after SIGSTOP; reopened {reconnected:.3f} s after SIGCONT")
