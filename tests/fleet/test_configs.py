"""
The files in ``deploy/`` are valid for the tools that read them (HAProxy,
nginx, systemd, Kubernetes), and their numbers agree with the server's own
defaults, read from the code: idle timeouts longer than the heartbeat's
bound, stop timeouts longer than a whole drain, a drain grace longer than the
balancer's check takes to notice.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.interop.conftest import TWISTD
from twisted_keepalive.core.config import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
)
from twisted_keepalive.server.options import Options
from twisted_keepalive.server.workers.supervisor import _EXIT_GRACE

from . import configs

#: The longest a connection can be silent and still count as alive.
HEARTBEAT_BOUND = DEFAULT_PING_INTERVAL + DEFAULT_PING_TIMEOUT + DEFAULT_CLOSE_TIMEOUT
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
VENV = "/opt/wskeepalive"


def parsed(arguments: list[str]) -> Options:
    """``twistd wskeepalive`` options as the server parses them; ports made free."""
    free = []
    for argument in arguments:
        for option in ("--listen", "--metrics"):
            if argument.startswith(f"{option}="):
                argument = f"{option}=tcp:0:interface=127.0.0.1"
        free.append(argument)
    options = Options()
    options.parseOptions(free)
    return options


def drain_bound(options: Options) -> float:
    """The longest a stop takes: grace + spread + close timeout (+ the workers' margin)."""
    settings = options.settings
    close_timeout = settings.keepalive.get("close_timeout") or DEFAULT_CLOSE_TIMEOUT
    assert isinstance(close_timeout, float)
    margin = _EXIT_GRACE if settings.workers > 1 else 0.0
    return settings.drain_grace + settings.drain_spread + close_timeout + margin


def test_haproxy_accepts_its_config() -> None:
    if configs.HAPROXY is None:
        pytest.skip(str(configs.MISSING["haproxy"]))
    backends = ["127.0.0.1:18081", "127.0.0.1:18082", "127.0.0.1:18083"]
    checked = subprocess.run(
        [configs.HAPROXY, "-c", "-f", str(configs.HAPROXY_CFG)],
        env=configs.haproxy_environment("127.0.0.1:18080", backends),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout + checked.stderr


def test_nginx_accepts_its_config(tmp_path: Path) -> None:
    if configs.NGINX is None:
        pytest.skip(str(configs.MISSING["nginx"]))
    backends = ["127.0.0.1:18081", "127.0.0.1:18082", "127.0.0.1:18083"]
    included = tmp_path / "wskeepalive.conf"
    included.write_text(configs.render_nginx("127.0.0.1:18080", backends))
    main = tmp_path / "nginx.conf"
    main.write_text(configs.nginx_main_config(tmp_path, included))
    checked = subprocess.run(
        [configs.NGINX, "-t", "-c", str(main), "-p", str(tmp_path), "-e", str(tmp_path / "e.log")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_the_balancers_idle_timeouts_outlast_the_heartbeat() -> None:
    haproxy = configs.HAProxySettings()
    # A connection the heartbeat still counts as alive is never cut.
    assert haproxy.tunnel_timeout > HEARTBEAT_BOUND
    assert configs.nginx_idle_timeout() > HEARTBEAT_BOUND


def _unit() -> dict[str, str]:
    text = configs.SYSTEMD_UNIT.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_the_systemd_unit_stops_only_after_a_whole_drain() -> None:
    unit = _unit()
    command = shlex.split(unit["ExecStart"])
    assert command[:3] == [f"{VENV}/bin/twistd", "-n", "--pidfile="], command
    options = parsed(command[command.index("wskeepalive") + 1 :])
    assert unit["Type"] == "simple"
    assert unit["KillSignal"] == "SIGTERM"
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert options.settings.workers > 1, "ExecReload's rolling restart needs --workers"
    assert float(unit["TimeoutStopSec"]) >= drain_bound(options)
    assert options.settings.drain_grace >= configs.HAProxySettings().marks_down_within
    assert int(unit["LimitNOFILE"]) >= 20_000


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze (Debian's systemd package) is missing")
    # Only the paths change: the venv's twistd, a working directory that exists.
    text = configs.SYSTEMD_UNIT.read_text()
    assert f"{VENV}/bin/twistd" in text
    text = text.replace(f"{VENV}/bin/twistd", str(TWISTD)).replace(VENV, str(tmp_path))
    unit = tmp_path / "wskeepalive.service"
    unit.write_text(text)
    verified = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    problems = [
        line for line in (verified.stdout + verified.stderr).splitlines()
        # A container's systemd has no running manager to ask about these.
        if "wskeepalive.service" in line or "Failed" in line
    ]  # fmt: skip
    assert verified.returncode == 0 and not problems, verified.stdout + verified.stderr


def _kubernetes() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml", reason="PyYAML (the test extra) is missing")
    with configs.KUBERNETES.open() as documents:
        return [doc for doc in yaml.safe_load_all(documents) if doc]


def test_kubernetes_gives_the_drain_its_time_and_probes_readiness() -> None:
    deployment = next(doc for doc in _kubernetes() if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][-1] == "wskeepalive"
    options = parsed(container["args"])
    assert pod["terminationGracePeriodSeconds"] >= drain_bound(options)
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["httpGet"]["path"] == "/readyz"
    assert liveness["httpGet"]["path"] == "/healthz"
    # Out of the endpoints by readiness, too, before the grace ends.
    assert (
        readiness["periodSeconds"] * readiness["failureThreshold"] <= options.settings.drain_grace
    )
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert readiness["httpGet"]["port"] in ports
