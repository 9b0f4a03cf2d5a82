"""
Serving on Twisted endpoints, for the server and the metrics endpoint alike:
:class:`ListeningService`, one endpoint listening while the service runs, a
port that cannot be bound stopping twistd at start-up; and
:class:`QuietSite`, a ``twisted.web`` site with no access log unless asked.

Twisted's ``StreamServerEndpointService`` logs a failed ``listen()`` and
carries on, leaving a server that listens nowhere; only a private flag makes
it raise.  :class:`ListeningService` uses the endpoint's public ``listen()``
alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site

__all__ = ["ListeningService", "QuietSite"]

_log = Logger(namespace="twisted_keepalive")


class ListeningService(Service):
    """
    Listens on ``endpoint`` with ``factory`` while running.

    Binding happens in ``privilegedStartService`` (before twistd drops root
    privileges with ``--uid``), and an endpoint that fails at once -- a port
    in use, a socket path that cannot be created -- raises there, so that
    twistd reports it and exits non-zero.

    :param listening: called with the ``IListeningPort`` once listening
        (default: nothing), e.g. to tune how it accepts.
    :ivar port: the ``IListeningPort``, once listening; ``None`` before and after.
    """

    def __init__(
        self, endpoint: Any, factory: Any, listening: Callable[[Any], object] | None = None
    ) -> None:
        #: The ``IStreamServerEndpoint`` to listen on.
        self.endpoint = endpoint
        #: The factory each accepted connection is built by.
        self.factory = factory
        self.port: Any = None
        self._on_listening = listening
        self._listening: Deferred[Any] | None = None

    def privilegedStartService(self) -> None:
        """Listen now, before twistd drops privileges; raise if that fails at once."""
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        self._listen()

    def startService(self) -> None:
        """Listen, unless :meth:`privilegedStartService` already did."""
        super().startService()  # type: ignore[no-untyped-call]
        if self._listening is None:
            self._listen()

    def _listen(self) -> None:
        failed: list[Failure] = []
        starting = True
        listening = self._listening = self.endpoint.listen(self.factory)

        def listened(port: Any) -> Any:
            self.port = port
            if self._on_listening is not None:
                self._on_listening(port)
            return port

        def fail(failure: Failure) -> None:
            if starting:
                failed.append(failure)
            elif not failure.check(CancelledError):  # type: ignore[no-untyped-call]
                # An endpoint that listens later (a plugin's) and then fails.
                _log.failure("cannot listen on {endpoint}", failure, endpoint=self.endpoint)

        listening.addCallbacks(listened, fail)
        starting = False
        if failed:
            self._listening = None
            failed[0].raiseException()

    def stopService(self) -> Deferred[None]:
        """Stop listening; fires once the port is closed."""
        super().stopService()  # type: ignore[no-untyped-call]
        return self.stop_listening()

    def stop_listening(self) -> Deferred[None]:
        """Stop listening now, while the service may go on running (draining)."""
        port, self.port = self.port, None
        listening, self._listening = self._listening, None
        if port is not None:
            stopped = port.stopListening()
            if isinstance(stopped, Deferred):
                return stopped.addCallback(lambda _: None)
        if listening is not None:
            # An endpoint that has not listened yet: stop it trying.
            listening.cancel()
        return succeed(None)


class QuietSite(Site):
    """
    A ``twisted.web`` site that logs no request unless ``access_log`` is
    true: health probes and scrapes every few seconds must not fill an
    operator's log, and twistd's log prints every level, debug included.
    With ``access_log``, each request is an info event
    (``keepalive_event="http"``) with the method, path, status and peer as
    fields.

    :param access_log: log every request; default ``False``.
    """

    #: No "Starting factory" line for every port.
    noisy = False
    #: Never show a traceback to a client.
    displayTracebacks = False

    def __init__(self, *args: Any, access_log: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        #: Whether each request is logged.
        self.access_log = access_log

    def log(self, request: Any) -> None:
        """Log one request, if asked to (twisted.web calls this once it is answered)."""
        if not self.access_log:
            return
        _log.info(
            "{method} {path} {code} from {peer}",
            method=request.method.decode("latin-1"),
            path=request.uri.decode("latin-1"),
            code=request.code,
            peer=str(request.getClientAddress()),
            keepalive_event="http",
        )
