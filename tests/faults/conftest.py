"""
Fixtures of the fault suite.

Slow variants are marked ``slow`` and run only with ``KEEPALIVE_SLOW=1`` in
the environment (a ``--run-slow`` option would have to be declared in the
root conftest; see docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import Procs


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Start child processes; every one is stopped (and reaped) at the end."""
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(params=["autobahn", "twisted"])
def framing(request: pytest.FixtureRequest) -> str:
    """The framing our server runs on, each in turn for the tests that take it."""
    return str(request.param)
