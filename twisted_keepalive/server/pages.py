"""
What a browser gets from a plain HTTP GET (no WebSocket upgrade): the demo
page at ``/``, which holds a heartbeat connection and charts its latency,
and the browser module it uses at ``/keepalive.js``; anything else is a 404.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING, Any

__all__ = ["STATIC_FILES", "StaticPages"]

#: Path -> (file in ``twisted_keepalive/static``, Content-Type).
STATIC_FILES = {
    "/": ("demo.html", "text/html; charset=utf-8"),
    "/keepalive.js": ("keepalive.js", "application/javascript; charset=utf-8"),
}

_PLAIN_TEXT = "text/plain; charset=utf-8"


class StaticPages:
    """The static pages, for a served class to put before the operator's protocol."""

    if TYPE_CHECKING:
        # Provided by the Autobahn protocol it goes with.
        factory: Any
        http_request_path: str

        def sendData(self, data: bytes) -> None: ...

    def sendServerStatus(self, redirectUrl: str | None = None, redirectAfter: int = 0) -> None:
        """
        Answer a plain HTTP GET (no WebSocket upgrade) with a file from
        ``static/``, by path, or 404.

        Autobahn calls this instead of its own status page (``webStatus``, on
        by default) and closes the connection after it.
        """
        served = STATIC_FILES.get(self.http_request_path)
        if served is None:
            status, content_type, body = "404 Not Found", _PLAIN_TEXT, b"not found\n"
        else:
            name, content_type = served
            status, body = "200 OK", _static_file(name)
        server = self.factory.server
        head = [
            f"HTTP/1.1 {status}",
            *([f"Server: {server}"] if server else []),
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            # The page and the module change with the package: always revalidate.
            "Cache-Control: no-cache",
            "X-Content-Type-Options: nosniff",
            "Connection: close",
        ]
        self.sendData("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)


@functools.cache
def _static_file(name: str) -> bytes:
    # Read once per process, on first request, from the installed package.
    return resources.files("twisted_keepalive").joinpath("static", name).read_bytes()
