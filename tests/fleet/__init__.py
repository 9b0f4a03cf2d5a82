"""
The fleet fault suite: three ``twistd -n wskeepalive`` backends on loopback
behind HAProxy or nginx, run on the very files in ``deploy/``, with
keepalive.js clients in Node and in headless Chromium, and the Python
``ReconnectingClient``, spread over them; real faults (SIGTERM drains,
SIGKILL, SIGSTOP, SIGHUP rolling restarts, the balancer's idle timeout).
Each test prints its figures (``measured: {...}``; with
``KEEPALIVE_FAULTS_REPORT=FILE`` they are appended to FILE as JSON lines);
docs/deploy.md's table is made from them.

By default a short version runs (a few minutes on two cores): fewer clients,
HAProxy only where nginx would only repeat it.  ``KEEPALIVE_FLEET_FULL=1``
runs the full one: more clients, both balancers for every scenario, longer
holds.  Tests that need haproxy, nginx, Chromium or Node skip, saying so,
only when the program is missing.
"""

import os

FULL = os.environ.get("KEEPALIVE_FLEET_FULL", "") not in ("", "0")


def balancers(short: tuple[str, ...]) -> tuple[str, ...]:
    """The balancers a scenario runs behind: ``short`` by default, both in the full run."""
    return ("haproxy", "nginx") if FULL else short
