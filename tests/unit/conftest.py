"""Fixtures shared by the deterministic tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from twisted.logger import LogEvent, globalLogPublisher

from .framings import NO_WEB_FRAMING, WEB_FRAMING


@pytest.fixture
def logged() -> Iterator[list[LogEvent]]:
    """Every event logged while the test runs."""
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@pytest.fixture(
    params=[
        "autobahn",
        pytest.param("twisted", marks=pytest.mark.skipif(not WEB_FRAMING, reason=NO_WEB_FRAMING)),
    ]
)
def framing(request: pytest.FixtureRequest) -> str:
    """Each framing in turn: the behavioural tests run on both."""
    return str(request.param)
