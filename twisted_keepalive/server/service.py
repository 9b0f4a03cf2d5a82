"""
:func:`build_service`: the one server that :class:`~.settings.Settings`
describe, assembled: the served class, its factory and protocol options,
the endpoints, the shutdown, the garbage-collector policy and the metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger

from twisted_keepalive import collect_stats, set_keepalive_options

from .gc import GarbageCollection, gc_collector
from .pages import StaticPages
from .settings import Settings
from .shutdown import WebSocketService
from .tracking import ServerFactory, TrackedConnection

__all__ = ["build_service", "served_class"]

_log = Logger(namespace="twisted_keepalive")

# Typed names for the Twisted APIs that have no annotations, so that the rest
# of the module is checked by mypy --strict.
_server_from_string: Callable[[Any, str], IStreamServerEndpoint] = endpoints.serverFromString
_listener: Callable[[IStreamServerEndpoint, Any], StreamServerEndpointService] = (
    StreamServerEndpointService
)


def served_class(protocol: type[Any]) -> type[Any]:
    """``protocol`` tracked and serving the static pages, under its own name."""
    # Named as the operator's class, so that log lines name it.
    return type(
        protocol.__name__,
        (TrackedConnection, StaticPages, protocol),
        {"__qualname__": protocol.__qualname__},
    )


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
    service = WebSocketService(factory, close_timeout, reactor)
    collection = GarbageCollection(
        settings.gc, reactor, lambda: len(factory.connections), lambda: factory.lost
    )
    if settings.metrics is not None:
        # Only with --metrics: prometheus_client is an optional extra.
        from twisted_keepalive.metrics import MetricsService

        metrics = MetricsService(settings.metrics, [collect_stats(factory)], reactor)
        metrics.registry.register(gc_collector(collection))
        service.addService(metrics)  # type: ignore[no-untyped-call]
    for description in settings.listen:
        made = endpoint(description) if endpoint else _server_from_string(reactor, description)
        listener = _listener(made, factory)
        # A port that cannot be bound stops twistd at startup instead of
        # leaving a server that listens nowhere.
        listener._raiseSynchronously = True
        service.addService(listener)  # type: ignore[no-untyped-call]
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
