"""
Health for load balancers and orchestrators: ``/healthz`` answers 200 while
the reactor runs (it answers at all: a blocked reactor answers nothing), and
``/readyz`` 200 while the server takes new connections, 503 from the moment
a drain starts -- before any connection is closed, so that a balancer stops
sending new clients during ``--drain-grace``.

Both answer ``GET`` and ``HEAD``, are never cached, and are served on every
``--listen`` port and on the ``--metrics`` endpoint.
"""

from __future__ import annotations

from typing import Any

from twisted.web import http
from twisted.web.resource import Resource

from .pages import headers_only

__all__ = ["Liveness", "Readiness", "Ready", "health_children"]


class Ready:
    """Whether the server takes new connections; one per process."""

    def __init__(self) -> None:
        self.ready = True
        #: Why not, once not ready (``"draining"``).
        self.reason = ""

    def stop(self, reason: str) -> None:
        """Turn ``/readyz`` to 503 from now on."""
        self.ready = False
        self.reason = reason


class _Probe(Resource):
    isLeaf = True

    def render_HEAD(self, request: Any) -> bytes:
        return headers_only(request, self.render_GET(request))

    def render_GET(self, request: Any) -> bytes:
        raise NotImplementedError

    def _answer(self, request: Any, code: int, text: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return text.encode("utf-8") + b"\n"


class Liveness(_Probe):
    """``/healthz``: 200 ``ok`` whenever the reactor gets to answer."""

    def render_GET(self, request: Any) -> bytes:
        return self._answer(request, http.OK, "ok")


class Readiness(_Probe):
    """``/readyz``: 200 ``ready``, or 503 with the reason once draining."""

    def __init__(self, ready: Ready) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._ready = ready

    def render_GET(self, request: Any) -> bytes:
        if self._ready.ready:
            return self._answer(request, http.OK, "ready")
        return self._answer(request, http.SERVICE_UNAVAILABLE, self._ready.reason or "not ready")


def health_children(ready: Ready) -> dict[bytes, Resource]:
    """The probe resources by path segment, for a root resource to hold."""
    return {b"healthz": Liveness(), b"readyz": Readiness(ready)}  # type: ignore[no-untyped-call]
