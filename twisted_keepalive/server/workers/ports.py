"""
The ports that workers share: which ``--listen`` endpoints can be shared
(:func:`listen_problem`), where each listens (:class:`Address`), the
parent's reservation of each port (:func:`reserve`), and the endpoint each
worker listens on with ``SO_REUSEPORT`` (:class:`ReusePortEndpoint`).

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
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, succeed

__all__ = ["SHARED_ENDPOINT_TYPES", "Address", "ReusePortEndpoint", "listen_problem", "reserve"]

#: Endpoint types workers can share.
SHARED_ENDPOINT_TYPES = frozenset({"tcp", "tcp6"})


def listen_problem(description: str) -> str | None:
    """
    Why ``description`` cannot be shared by workers, or ``None`` if it can.
    """
    kind = description.split(":", 1)[0]
    if kind in SHARED_ENDPOINT_TYPES:
        try:
            Address.parse(description)
        except ValueError as e:
            return f"--listen {description!r} cannot be shared by --workers: {e}"
        return None
    if kind == "unix":
        why = "SO_REUSEPORT does not balance unix sockets"
    elif kind == "ssl":
        why = "terminate TLS in front of the workers (nginx, HAProxy) and listen on tcp"
    else:
        why = "only tcp and tcp6 endpoints can be shared"
    return f"--listen {description!r} cannot be shared by --workers: {why}"


#: The positional fields of each endpoint type, in the order Twisted's own
#: parsers take them (``tcp:PORT:INTERFACE:BACKLOG``, ``tcp6:PORT:BACKLOG:INTERFACE``).
_POSITIONAL = {"tcp": ("port", "interface", "backlog"), "tcp6": ("port", "backlog", "interface")}

#: Where each type listens when the description names no interface.
_ANY_INTERFACE = {"tcp": "0.0.0.0", "tcp6": "::"}

#: What usually causes too many fields: an IPv6 address's colons, unescaped.
_IPV6_HINT = " (write each : of an IPv6 address as \\:, e.g. interface=\\:\\:1)"

#: Twisted's own default backlog for these endpoints.
_TWISTED_BACKLOG = 50


@dataclass(frozen=True)
class Address:
    """Where a shared port listens, from a tcp/tcp6 endpoint description."""

    family: socket.AddressFamily
    interface: str
    port: int
    backlog: int

    @classmethod
    def parse(cls, description: str) -> Address:
        """
        The address a ``tcp:`` or ``tcp6:`` description listens on.

        Read from the string itself, with the grammar of Twisted's
        ``serverFromString`` (``:`` between fields, ``\\`` escaping the next
        character): the endpoints Twisted builds keep what they were given
        only in private attributes.  The family comes from the interface, as
        Twisted's ``listenTCP`` chooses it, so ``tcp:0:interface=\\:\\:1``
        listens on IPv6; the type only chooses the interface when none is
        named.

        :raise ValueError: saying which field is wrong and what was expected.
        """
        kind, positional, named = _fields(description)
        if kind not in _POSITIONAL:
            raise ValueError(f"only tcp and tcp6 endpoints can be shared, not {kind!r}")
        order = _POSITIONAL[kind]
        if len(positional) > len(order):
            raise ValueError(f"{kind} takes at most {len(order)} fields without a name{_IPV6_HINT}")
        fields = dict(zip(order, positional, strict=False))
        for name, value in named.items():
            if name not in order:
                raise ValueError(f"{kind} endpoints take no {name}=")
            if name in fields:
                raise ValueError(f"{name} is given twice{_IPV6_HINT}")
            fields[name] = value
        if "port" not in fields:
            raise ValueError("the port is missing")
        port = _whole_number("port", fields["port"], 0, 65535)
        backlog = _whole_number("backlog", fields.get("backlog", str(_TWISTED_BACKLOG)), 1, None)
        interface = fields.get("interface") or _ANY_INTERFACE[kind]
        if isIPv6Address(interface):
            family = socket.AF_INET6
        elif isIPAddress(interface):
            family = socket.AF_INET
        else:
            raise ValueError(f"the interface must be an IPv4 or IPv6 address, not {interface!r}")
        return cls(family, interface, port, backlog)

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


def reserve(descriptions: Iterable[str]) -> tuple[list[socket.socket], list[Address]]:
    """
    Bind (without listening) a ``SO_REUSEPORT`` socket on each address, so
    that a port in use fails once, before any worker starts, and the port
    stays ours while workers come and go; the sockets, and the addresses
    with the port the kernel chose for ``tcp:0``.

    :raise CannotListenError: for the first address that cannot be bound.
    """
    reserved: list[socket.socket] = []
    addresses: list[Address] = []
    for description in descriptions:
        address = Address.parse(description)
        try:
            sock = address.socket()
        except OSError as e:
            for sock in reserved:
                sock.close()
            raise error.CannotListenError(  # type: ignore[no-untyped-call]
                address.interface, address.port, e
            ) from None
        reserved.append(sock)
        addresses.append(replace(address, port=sock.getsockname()[1]))
    return reserved, addresses


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


def _fields(description: str) -> tuple[str, list[str], dict[str, str]]:
    # Twisted's grammar: fields split at ":", a field's name split from its
    # value at its first "=", and a backslash makes the next character literal.
    fields: list[list[str]] = [[""]]
    chars = iter(description)
    for char in chars:
        if char == "\\":
            fields[-1][-1] += next(chars, "")
        elif char == ":":
            fields.append([""])
        elif char == "=" and len(fields[-1]) == 1:
            fields[-1].append("")
        else:
            fields[-1][-1] += char
    (kind, *_), *rest = fields
    positional = [field[0] for field in rest if len(field) == 1]
    named = {field[0]: field[1] for field in rest if len(field) == 2}
    return kind, positional, named


def _whole_number(name: str, text: str, minimum: int, maximum: int | None) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum or (maximum is not None and value > maximum):
        # Worded as the one-process check words it (parsing.py, endpoints.py).
        span = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise ValueError(f"the {name} must be a whole number {span}, not {text!r}")
    return value
