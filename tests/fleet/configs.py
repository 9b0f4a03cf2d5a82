"""
The deployment files of ``deploy/`` as the tests use them: found, filled in
with addresses and paths only (never a timeout or a check), and read back for
the figures the scenarios assert against (the health check's interval and
failures, the idle timeouts).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
HAPROXY_CFG = DEPLOY / "haproxy.cfg"
NGINX_CONF = DEPLOY / "nginx.conf"
SYSTEMD_UNIT = DEPLOY / "wskeepalive.service"
KUBERNETES = DEPLOY / "kubernetes.yaml"

# Debian installs both in /usr/sbin, which is not on every user's PATH.
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
MISSING = {
    "haproxy": "haproxy (Debian's haproxy package) is missing" if HAPROXY is None else None,
    "nginx": "nginx (Debian's nginx package) is missing" if NGINX is None else None,
}

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    """A duration as HAProxy and nginx write it (``500ms``, ``2s``, ``1m``; bare: s)."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if found is None:
        raise ValueError(f"not a duration: {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def haproxy_environment(bind: str, backends: list[str]) -> dict[str, str]:
    """The environment deploy/haproxy.cfg reads its addresses from."""
    if len(backends) != 3:
        raise ValueError(f"deploy/haproxy.cfg names three backends, not {len(backends)}")
    env = dict(os.environ)
    env["WSK_BIND"] = bind
    for number, address in enumerate(backends, 1):
        env[f"WSK_BACKEND_{number}"] = address
    return env


def _directive(config: str, pattern: str) -> str:
    found = re.findall(pattern, config, flags=re.MULTILINE)
    if len(found) != 1:
        raise AssertionError(f"expected one {pattern!r} in the config, found {found}")
    return str(found[0])


class HAProxySettings:
    """What the fleet's timing depends on in deploy/haproxy.cfg."""

    def __init__(self, path: Path = HAPROXY_CFG) -> None:
        config = path.read_text()
        server = _directive(config, r"^\s*default-server\s+(.*)$")
        words = server.split()
        self.inter = seconds(words[words.index("inter") + 1])
        self.fall = int(words[words.index("fall") + 1])
        self.rise = int(words[words.index("rise") + 1])
        self.check_timeout = seconds(_directive(config, r"^\s*timeout check\s+(\S+)"))
        self.tunnel_timeout = seconds(_directive(config, r"^\s*timeout tunnel\s+(\S+)"))

    @property
    def marks_down_within(self) -> float:
        """Seconds from the first 503 of /readyz to the backend marked down, at most."""
        return self.inter * self.fall

    @property
    def frozen_down_within(self) -> float:
        """Seconds from a backend frozen to marked down: each check waits for its timeout."""
        return (self.inter + self.check_timeout) * self.fall


def nginx_idle_timeout(path: Path = NGINX_CONF) -> float:
    config = path.read_text()
    read = seconds(_directive(config, r"^\s*proxy_read_timeout\s+(\S+);"))
    send = seconds(_directive(config, r"^\s*proxy_send_timeout\s+(\S+);"))
    assert read == send, "the idle timeout should be the same in both directions"
    return read


def render_nginx(listen: str, backends: list[str]) -> str:
    """deploy/nginx.conf with its placeholders -- addresses only -- filled in."""
    if len(backends) != 3:
        raise ValueError(f"deploy/nginx.conf names three backends, not {len(backends)}")
    values = {"WSK_LISTEN": listen} | {
        f"WSK_BACKEND_{number}": address for number, address in enumerate(backends, 1)
    }
    text = NGINX_CONF.read_text()
    for name, value in values.items():
        placeholder = f"@{name}@"
        assert placeholder in text, f"deploy/nginx.conf lost its {placeholder}"
        text = text.replace(placeholder, value)
    left = re.findall(r"@[A-Z0-9_]+@", text)
    assert not left, f"placeholders the tests do not know: {left}"
    return text


def nginx_main_config(prefix: Path, included: Path, connections: int = 4096) -> str:
    """
    The main context nginx needs around deploy/nginx.conf (Debian's
    /etc/nginx/nginx.conf in production): files under ``prefix``, and the
    http block that includes the deployment file, nothing else of nginx's.
    """
    # As root, nginx would run its worker as nobody, who cannot enter pytest's
    # private temporary directory.
    user = "user root;" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections {connections}; }}
http {{
    access_log {prefix}/access.log;
{temp}
    include {included};
}}
"""
