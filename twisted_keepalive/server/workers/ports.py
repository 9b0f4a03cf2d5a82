"""
The ports that workers share: which ``--listen`` endpoints can be shared
(:func:`listen_problem`), where each listens (:class:`Address`), and the
endpoint each worker listens on with ``SO_REUSEPORT``
(:class:`ReusePortEndpoint`).

Each worker binds and listens on its own socket with ``SO_REUSEPORT``, and
the Linux kernel spreads incoming connections over the sockets by a hash of
their addresses: evenly, whatever each worker is doing.  The alternative --
one socket in the parent, inherited by the workers and adopted with
``adoptStreamPort`` -- wakes every idle worker on every connection and lets
whichever calls ``accept()`` first take as many as are queued; the spread
then follows scheduling luck, and a worker that gets more than its share
reaches the per-process file limit first.  With ``SO_REUSEPORT`` a worker
that dies takes only the connections waiting in its own accept queue with
it; the others keep accepting.

Only ``tcp`` and ``tcp6`` endpoints can be shared this way: ``SO_REUSEPORT``
does not balance unix sockets, and TLS would have to be set up in each
worker from the endpoint's private state; terminate TLS in front of the
workers (nginx, HAProxy) instead.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString

__all__ = ["SHARED_ENDPOINT_TYPES", "Address", "ReusePortEndpoint", "listen_problem"]

#: Endpoint types workers can share.
SHARED_ENDPOINT_TYPES = frozenset({"tcp", "tcp6"})


def listen_problem(description: str) -> str | None:
    """
    Why ``description`` cannot be shared by workers, or ``None`` if it can.
    """
    kind = description.split(":", 1)[0]
    if kind in SHARED_ENDPOINT_TYPES:
        return None
    if kind == "unix":
        why = "SO_REUSEPORT does not balance unix sockets"
    elif kind == "ssl":
        why = "terminate TLS in front of the workers (nginx, HAProxy) and listen on tcp"
    else:
        why = "only tcp and tcp6 endpoints can be shared"
    return f"--listen {description!r} cannot be shared by --workers: {why}"


@dataclass(frozen=True)
class Address:
    """Where a shared port listens, from a tcp/tcp6 endpoint description."""

    family: socket.AddressFamily
    interface: str
    port: int
    backlog: int

    @classmethod
    def parse(cls, reactor: Any, description: str) -> Address:
        endpoint = serverFromString(reactor, description)  # type: ignore[no-untyped-call]
        family = socket.AF_INET6 if description.startswith("tcp6:") else socket.AF_INET
        # TCP4ServerEndpoint and TCP6ServerEndpoint keep what they were given
        # in these attributes (since Twisted 10); refuse rather than guess.
        try:
            interface, port, backlog = endpoint._interface, endpoint._port, endpoint._backlog
        except AttributeError:
            raise ValueError(f"cannot read the address of {description!r}") from None
        if not interface:
            interface = "::" if family == socket.AF_INET6 else "0.0.0.0"
        return cls(family, interface, int(port), int(backlog))

    def socket(self) -> socket.socket:
        """A socket bound to this address with SO_REUSEPORT, not listening yet."""
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface, self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    def description(self) -> str:
        interface = self.interface.replace(":", "\\:")
        kind = "tcp6" if self.family == socket.AF_INET6 else "tcp"
        return f"{kind}:{self.port}:interface={interface}:backlog={self.backlog}"


class ReusePortEndpoint:
    """
    An ``IStreamServerEndpoint`` listening on its own ``SO_REUSEPORT`` socket,
    so that every worker can listen on the same port.
    """

    def __init__(self, reactor: Any, address: Address) -> None:
        self._reactor = reactor
        self._address = address

    def listen(self, factory: Any) -> Deferred[Any]:
        sock = self._address.socket()
        try:
            sock.listen(self._address.backlog)
            sock.setblocking(False)
            # The reactor duplicates the descriptor; ours is closed below.
            port = self._reactor.adoptStreamPort(sock.fileno(), self._address.family, factory)
        finally:
            sock.close()
        return succeed(port)
