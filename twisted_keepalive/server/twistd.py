"""
What the ``wskeepalive`` plugin hands twistd: :class:`Options`, and
:func:`makeService`, which makes one server or, with ``--workers N``, the
parent of N.
"""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.internet.defer import succeed

from .options import Options
from .service import build_service
from .signals import StopSignals
from .workers.hangup import OnHangup, single_process_hangup
from .workers.supervisor import WorkersService

__all__ = ["Options", "makeService"]


def makeService(options: Options) -> MultiService:
    """``IServiceMaker.makeService`` for ``twistd wskeepalive``."""
    # Not at the top: importing it installs the default reactor, which is
    # twistd's to choose (--reactor) before it asks for the service.
    from twisted.internet import reactor

    if options.settings.workers > 1:
        parent = WorkersService(options.settings, options.worker_arguments(), reactor)
        # The workers drain themselves when the parent stops them; a second
        # signal hurries every worker still draining, retiring ones included.
        StopSignals(reactor, lambda: succeed(None), parent.hurry).setServiceParent(parent)  # type: ignore[no-untyped-call]
        return parent
    server = build_service(options.settings, reactor)
    StopSignals(reactor, server.drain, server.hurry).setServiceParent(server)  # type: ignore[no-untyped-call]
    OnHangup(reactor, single_process_hangup).setServiceParent(server)  # type: ignore[no-untyped-call]
    return server
