"""
What the ``wskeepalive`` plugin hands twistd: :class:`Options`, and
:func:`makeService`, which makes one server or, with ``--workers N``, the
parent of N.
"""

from __future__ import annotations

from twisted.application.service import MultiService

from .options import Options
from .service import build_service
from .workers.hangup import OnHangup, single_process_hangup
from .workers.supervisor import WorkersService

__all__ = ["Options", "makeService"]


def makeService(options: Options) -> MultiService:
    """``IServiceMaker.makeService`` for ``twistd wskeepalive``."""
    # Not at the top: importing it installs the default reactor, which is
    # twistd's to choose (--reactor) before it asks for the service.
    from twisted.internet import reactor

    if options.settings.workers > 1:
        return WorkersService(options.settings, options.worker_arguments(), reactor)
    service = build_service(options.settings, reactor)
    OnHangup(reactor, single_process_hangup).setServiceParent(service)  # type: ignore[no-untyped-call]
    return service
