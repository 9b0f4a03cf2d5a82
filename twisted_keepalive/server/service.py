"""
:func:`build_service`: the one server that :class:`~.settings.Settings`
describe, assembled: the served class, its factory and protocol options,
the ``twisted.web`` site around it (pages, probes), the endpoints, the
drain, the garbage-collector policy and the metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger

from twisted_keepalive import collect_stats, set_keepalive_options
from twisted_keepalive.serving import ListeningService, QuietSite

from .gc import GarbageCollection, gc_collector
from .health import Ready, health_children
from .pages import DEMO_PAGE, MODULE, PackageFile
from .settings import Settings
from .shutdown import WebSocketService
from .site import ServerRoot, TakeoverResource
from .tracking import ServerFactory, TrackedConnection

__all__ = ["build_service", "build_site", "served_class"]

_log = Logger(namespace="twisted_keepalive")

# Typed names for the Twisted APIs that have no annotations, so that the rest
# of the module is checked by mypy --strict.
_server_from_string: Callable[[Any, str], IStreamServerEndpoint] = endpoints.serverFromString


def served_class(protocol: type[Any]) -> type[Any]:
    """``protocol`` with its connections tracked, under its own name."""
    # Named as the operator's class, so that log lines name it.
    return type(
        protocol.__name__, (TrackedConnection, protocol), {"__qualname__": protocol.__qualname__}
    )


def build_site(factory: ServerFactory, settings: Settings, ready: Ready) -> QuietSite:
    """
    The ``twisted.web`` site of one server: WebSocket upgrades on any path
    to ``factory``; ``/`` (the demo page, unless ``--demo off``),
    ``/keepalive.js``, ``/healthz`` and ``/readyz`` to plain requests.
    """
    children = {
        **health_children(ready),
        b"keepalive.js": PackageFile(*MODULE, cors_origins=settings.cors_origins),
    }
    if settings.demo:
        children[b""] = PackageFile(*DEMO_PAGE)
    root = ServerRoot(TakeoverResource(factory), children)  # type: ignore[no-untyped-call]
    # Idle HTTP connections -- a WebSocket client that never sends its
    # handshake among them -- go after Autobahn's opening-handshake timeout,
    # as they did before twisted.web parsed the handshake.
    return QuietSite(root, timeout=factory.openHandshakeTimeout)  # type: ignore[no-untyped-call]


def build_service(
    settings: Settings,
    reactor: Any,
    endpoint: Callable[[str], IStreamServerEndpoint] | None = None,
) -> WebSocketService:
    """
    The server ``settings`` describe: one factory serving ``settings.protocol``
    on every endpoint, and the shutdown that closes its connections.

    :param endpoint: makes the endpoint of each ``settings.listen``
        description; by default Twisted's ``serverFromString`` (a worker of
        ``--workers`` listens with ``SO_REUSEPORT`` instead).
    """
    close_timeout = settings.close_timeout
    factory = ServerFactory(settings.external_url, reactor)
    factory.protocol = served_class(settings.protocol)
    factory.setProtocolOptions(  # type: ignore[no-untyped-call]
        allowedOrigins=list(settings.allowed_origins) or ["*"],
        maxMessagePayloadSize=settings.max_message_size,
        # Autobahn's closing-handshake timer runs on txaio's batched timer,
        # which truncates its deadline to a whole second: it fires up to 1 s
        # early (at once, for its 1 s default).  One second more keeps it from
        # ever cutting a handshake short; the keepalive's abort and the
        # shutdown's bound run on callLater and keep close_timeout exactly.
        closeHandshakeTimeout=close_timeout + 1.0,
        # Send the Close frame with its code (1009 message too big, 1002
        # protocol error) before closing, rather than drop TCP unexplained.
        failByDrop=False,
    )
    set_keepalive_options(factory, **settings.keepalive_given())
    ready = Ready()
    service = WebSocketService(
        factory,
        reactor,
        close_timeout=close_timeout,
        drain_grace=settings.drain_grace,
        drain_spread=settings.drain_spread,
        ready=ready,
    )
    site = build_site(factory, settings, ready)
    collection = GarbageCollection(
        settings.gc, reactor, lambda: len(factory.connections), lambda: factory.lost
    )
    if settings.metrics is not None:
        # Only with --metrics: prometheus_client is an optional extra.
        from twisted_keepalive.metrics import MetricsService

        metrics = MetricsService(
            settings.metrics, [collect_stats(factory)], reactor, children=health_children(ready)
        )
        metrics.registry.register(gc_collector(collection))
        service.addService(metrics)  # type: ignore[no-untyped-call]
    for description in settings.listen:
        made = endpoint(description) if endpoint else _server_from_string(reactor, description)
        service.add_listener(ListeningService(made, site))
    # Last: what start-up made (the listening ports included) gets frozen.
    service.addService(collection)  # type: ignore[no-untyped-call]
    _log.info(
        "serving {protocol} on {listen}; ping_interval {ping_interval}, "
        "ping_timeout {ping_timeout}, close_timeout {close_timeout} (seconds)",
        protocol=settings.protocol.__qualname__,
        listen=", ".join(settings.listen),
        metrics=settings.metrics,
        keepalive_event="start",
        **settings.keepalive_in_force(),
    )
    return service
