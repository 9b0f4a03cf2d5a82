"""
:func:`build_service`: the one server that :class:`~.settings.Settings`
describe, assembled: the served class, its factory and protocol options (on
Autobahn's framing here, on Twisted's in :mod:`.web_serving`), the
``twisted.web`` site around it (pages, probes), the endpoints, the drain,
the garbage-collector policy and the metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger

from twisted_keepalive import collect_stats, set_keepalive_options
from twisted_keepalive.serving import ListeningService

from .accepting import AcceptPacer
from .autobahn_debug import plain_debug_formatting
from .connections import ConnectionTracker
from .gc import GarbageCollection, gc_collector
from .health import Ready, health_children
from .pages import DEMO_PAGE, MODULE, PackageFile
from .settings import Settings
from .shutdown import WebSocketService
from .site import ServerRoot, ServerSite, TakeoverResource
from .tracking import ServerFactory, TrackedConnection

__all__ = ["autobahn_served", "build_service", "build_site", "served_class"]

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


def build_site(
    websocket: Any,
    settings: Settings,
    ready: Ready,
    *,
    idle_timeout: float | None,
    pacer: AcceptPacer | None = None,
) -> ServerSite:
    """
    The ``twisted.web`` site of one server: WebSocket upgrades on any path
    to the ``websocket`` resource; ``/`` (the demo page, unless ``--demo
    off``), ``/keepalive.js``, ``/healthz`` and ``/readyz`` to plain
    requests.

    :param idle_timeout: seconds after which an idle HTTP connection -- a
        WebSocket client that never sends its handshake among them -- is
        closed.
    :param pacer: paces the accepts of the ports the site listens on
        (default: none, Twisted's own pace).
    """
    children = {
        **health_children(ready),
        b"keepalive.js": PackageFile(*MODULE, cors_origins=settings.cors_origins),
    }
    if settings.demo:
        children[b""] = PackageFile(*DEMO_PAGE)
    root = ServerRoot(websocket, children)
    return ServerSite(root, timeout=idle_timeout, access_log=settings.access_log, pacer=pacer)


def autobahn_served(settings: Settings, reactor: Any) -> tuple[ServerFactory, TakeoverResource]:
    """The Autobahn factory of ``settings`` (it tracks its connections too), and its resource."""
    plain_debug_formatting()
    factory = ServerFactory(settings.external_url, reactor)
    factory.protocol = served_class(settings.protocol)
    factory.log_connections = settings.connection_log
    factory.setProtocolOptions(  # type: ignore[no-untyped-call]
        allowedOrigins=list(settings.allowed_origins) or ["*"],
        maxMessagePayloadSize=settings.max_message_size,
        # Autobahn's closing-handshake timer runs on txaio's batched timer,
        # which truncates its deadline to a whole second: it fires up to 1 s
        # early (at once, for its 1 s default).  One second more keeps it from
        # ever cutting a handshake short; the keepalive's abort and the
        # shutdown's bound run on callLater and keep close_timeout exactly.
        closeHandshakeTimeout=settings.close_timeout + 1.0,
        # --handshake-timeout bounds the opening handshake on either framing:
        # here, and as the site's idle timeout (below) for the HTTP request.
        openHandshakeTimeout=settings.handshake_timeout,
        # Send the Close frame with its code (1009 message too big, 1002
        # protocol error) before closing, rather than drop TCP unexplained.
        failByDrop=False,
    )
    set_keepalive_options(factory, **settings.keepalive_given())
    return factory, TakeoverResource(factory)  # type: ignore[no-untyped-call]


def _served(settings: Settings, reactor: Any) -> tuple[ConnectionTracker, Any, Any, float | None]:
    # The tracker of the connections, the factory collect_stats counts, the
    # resource every upgrade goes to, the HTTP idle timeout.
    if settings.framing == "twisted":
        # Only for --framing twisted: it needs twisted.web.websocket.
        from .web_serving import web_served

        tracker, counted, resource = web_served(settings, reactor)
        return tracker, counted, resource, settings.handshake_timeout
    factory, takeover = autobahn_served(settings, reactor)
    # Idle HTTP connections go after Autobahn's opening-handshake timeout, as
    # they did before twisted.web parsed the handshake.
    return factory, factory, takeover, factory.openHandshakeTimeout


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
    factory, counted, resource, idle_timeout = _served(settings, reactor)
    ready = Ready()
    pacer = AcceptPacer(reactor)
    site = build_site(resource, settings, ready, idle_timeout=idle_timeout, pacer=pacer)
    service = WebSocketService(
        factory,
        reactor,
        close_timeout=settings.close_timeout,
        drain_grace=settings.drain_grace,
        drain_spread=settings.drain_spread,
        ready=ready,
        handshakes_under_way=lambda: len(site.under_way),
    )
    collection = GarbageCollection(
        settings.gc, reactor, lambda: len(factory.connections), lambda: factory.lost
    )
    if settings.metrics is not None:
        # Only with --metrics: prometheus_client is an optional extra.
        from twisted_keepalive.metrics import MetricsService

        metrics = MetricsService(
            settings.metrics,
            [collect_stats(counted)],
            reactor,
            children=health_children(ready),
            access_log=settings.access_log,
        )
        metrics.registry.register(gc_collector(collection))
        service.addService(metrics)  # type: ignore[no-untyped-call]

    for description in settings.listen:
        made = endpoint(description) if endpoint else _server_from_string(reactor, description)
        service.add_listener(ListeningService(made, site, listening=pacer.add_port))
    # Last: what start-up made (the listening ports included) gets frozen.
    service.addService(collection)  # type: ignore[no-untyped-call]
    _log.info(
        "serving {protocol} on {listen} ({framing} framing); ping_interval {ping_interval}, "
        "ping_timeout {ping_timeout}, close_timeout {close_timeout} (seconds)",
        protocol=settings.protocol.__qualname__,
        framing=settings.framing,
        listen=", ".join(settings.listen),
        metrics=settings.metrics,
        keepalive_event="start",
        **settings.keepalive_in_force(),
    )
    return service
