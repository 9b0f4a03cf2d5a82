"""
The parent's ``/metrics`` with ``--workers``: a scrape whose client gives up
before the workers have answered (Prometheus's scrape timeout, a busy
machine) is dropped without an error.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyChannel

from twisted_keepalive.server.workers import metrics


@pytest.fixture
def failures() -> Any:
    seen: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if "log_failure" in event:
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


def slow_scrape(monkeypatch: pytest.MonkeyPatch) -> Deferred[bytes]:
    answer: Deferred[bytes] = Deferred()

    async def scrape(seats: Any, reactor: Any) -> bytes:
        return await answer

    monkeypatch.setattr(metrics, "scrape", scrape)
    return answer


def get(resource: Any) -> Request:
    request = Request(DummyChannel())  # type: ignore[no-untyped-call]
    request.method = b"GET"
    assert resource.render_GET(request) is NOT_DONE_YET
    return request


def test_a_scrape_answered_after_its_client_left_is_dropped_quietly(
    monkeypatch: pytest.MonkeyPatch, failures: list[LogEvent]
) -> None:
    answer = slow_scrape(monkeypatch)
    request = get(metrics._MergedMetrics(lambda: [], reactor=None))
    request.connectionLost(Failure(ConnectionDone()))
    answer.callback(b"twisted_keepalive_connections_open 3.0\n")
    gc.collect()  # an unhandled error in a Deferred is logged when it goes
    assert failures == []


def test_a_scrape_answered_in_time_is_served(
    monkeypatch: pytest.MonkeyPatch, failures: list[LogEvent]
) -> None:
    answer = slow_scrape(monkeypatch)
    request = get(metrics._MergedMetrics(lambda: [], reactor=None))
    channel = request.channel
    answer.callback(b"twisted_keepalive_connections_open 3.0\n")
    assert request.finished
    assert b"connections_open 3.0" in channel.transport.written.getvalue()
    assert failures == []
