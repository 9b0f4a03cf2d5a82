"""
The files a browser fetches with a plain HTTP request: the demo page at
``/`` (which holds a heartbeat connection and charts its latency; off with
``--demo off``) and the browser module at ``/keepalive.js``.

Each is a ``twisted.web`` resource, so ``HEAD``, conditional requests
(``ETag``, ``Last-Modified``) and ``Content-Length`` follow Twisted's rules.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Iterable
from importlib import resources
from typing import Any

from twisted.web import http
from twisted.web.resource import Resource

__all__ = ["DEMO_PAGE", "MODULE", "PackageFile", "cors_origins", "headers_only"]

#: (file in ``twisted_keepalive/static``, Content-Type).
DEMO_PAGE = ("demo.html", "text/html; charset=utf-8")
MODULE = ("keepalive.js", "text/javascript; charset=utf-8")

#: Read when the process started, for files that do not come from a
#: directory (a zipped install): their content can only have changed with
#: the process.
_STARTED = time.time()


class PackageFile(Resource):
    """
    One file of ``twisted_keepalive/static``, read once, served with an
    ``ETag`` (its content's digest) and ``Last-Modified`` (its mtime), and
    ``Cache-Control: no-cache``: a browser revalidates on every load and
    gets a ``304`` until the package changes.

    :param cors_origins: origins that may read the file from another origin
        (``Access-Control-Allow-Origin``), ``"*"`` for any; none by default.
    """

    isLeaf = True

    def __init__(self, name: str, content_type: str, cors_origins: Iterable[str] = ()) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.body, self.modified = _package_file(name)
        self.content_type = content_type.encode("ascii")
        self.etag = b'"' + hashlib.sha256(self.body).hexdigest()[:32].encode("ascii") + b'"'
        self.cors_origins = frozenset(cors_origins)

    def render_HEAD(self, request: Any) -> bytes:
        return headers_only(request, self.render_GET(request))

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", self.content_type)
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        self._allow_origin(request)
        # RFC 9110: If-None-Match wins over If-Modified-Since when both come.
        matched = request.setETag(self.etag)
        if request.getHeader(b"If-None-Match") is not None:
            request.setHeader(
                b"Last-Modified",
                http.datetimeToString(self.modified),  # type: ignore[no-untyped-call]
            )
        else:
            matched = request.setLastModified(self.modified)
        return b"" if matched == http.CACHED else self.body

    def render_OPTIONS(self, request: Any) -> bytes:
        # A CORS preflight, or a plain OPTIONS.
        self._allow_origin(request)
        request.setHeader(b"Allow", b"GET, HEAD, OPTIONS")
        request.setHeader(b"Access-Control-Allow-Methods", b"GET, HEAD, OPTIONS")
        request.setResponseCode(http.NO_CONTENT)
        return b""

    def _allow_origin(self, request: Any) -> None:
        if not self.cors_origins:
            return
        if "*" in self.cors_origins:
            request.setHeader(b"Access-Control-Allow-Origin", b"*")
            return
        # The answer depends on the Origin: caches must keep one per origin.
        request.setHeader(b"Vary", b"Origin")
        origin = request.getHeader(b"Origin")
        if origin is not None and origin.decode("latin-1") in self.cors_origins:
            request.setHeader(b"Access-Control-Allow-Origin", origin)


def headers_only(request: Any, body: bytes) -> bytes:
    """The answer to a HEAD, from what the GET would answer."""
    # What a GET would say, without the body (twisted.web would drop the body
    # too, but logs a line about it every time).
    request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    return b""


def cors_origins(values: Iterable[str]) -> tuple[str, ...]:
    """The ``--cors-origin`` values, checked: ``*`` or ``scheme://host[:port]``."""
    checked = []
    for value in values:
        origin = value.strip()
        if origin != "*":
            scheme, sep, rest = origin.partition("://")
            if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
                raise ValueError(
                    f"--cors-origin must be * or an origin like https://app.example.com, "
                    f"not {value!r}"
                )
        checked.append(origin)
    return tuple(checked)


@functools.cache
def _package_file(name: str) -> tuple[bytes, float]:
    # Read once per process, on first use, from the installed package.
    found = resources.files("twisted_keepalive").joinpath("static", name)
    body = found.read_bytes()
    try:
        modified = os.stat(os.fspath(found)).st_mtime  # type: ignore[call-overload]
    except (TypeError, OSError):
        modified = _STARTED
    return body, modified
