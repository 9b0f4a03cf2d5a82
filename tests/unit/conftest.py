"""Fixtures shared by the deterministic tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings
from twisted.logger import LogEvent, globalLogPublisher

from .framings import NO_WEB_FRAMING, WEB_FRAMING

# Hypothesis fails an example that takes over 200 ms by default: a timing
# assertion, which these tests never make (speed is measured in bench/).  On
# a loaded two-core machine a property test of the frame tracker failed so.
settings.register_profile("deterministic", deadline=None)
settings.load_profile("deterministic")


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
