"""
Fixtures of the fleet suite: :func:`fleet` starts three backends and a
balancer from ``deploy/`` in front of them; everything it and the test
started is killed at the end, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import configs
from .support import Fleet, Group, start_backends, start_balancer

StartFleet = Callable[..., Fleet]

#: The short settings every backend of the suite runs with: a dead client is
#: found within 1 + 1 + 1 s, the numbers the clients' own heartbeat mirrors.
SHORT = ["--ping-interval", "1", "--ping-timeout", "1", "--close-timeout", "1"]


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    """Children in process groups of their own; all killed at the end."""
    started = Group(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


@pytest.fixture
def fleet(group: Group) -> StartFleet:
    """
    ``fleet("haproxy", *options, first=[...])``: three backends with
    ``SHORT`` and ``options`` (the first one with ``first`` on top, e.g.
    ``--workers 2``), behind HAProxy or nginx.
    """

    def start(
        balancer: str, *options: str, first: tuple[str, ...] = (), short: bool = True
    ) -> Fleet:
        if configs.MISSING[balancer]:
            pytest.skip(configs.MISSING[balancer])
        common = [*(SHORT if short else []), *options]
        backends = start_backends(group, [[*common, *first], common, common])
        return Fleet(backends, start_balancer(group, balancer, backends), group)

    return start
