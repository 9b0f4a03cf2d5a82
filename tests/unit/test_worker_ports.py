"""
:class:`~twisted_keepalive.server.workers.ports.Address` reads a tcp/tcp6
description the way Twisted's ``serverFromString`` does: checked against
what Twisted itself asks a (memory) reactor to listen on.
"""

from __future__ import annotations

import socket

import pytest
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor

from twisted_keepalive.server.workers.ports import Address


@pytest.mark.parametrize(
    "description",
    [
        "tcp:8080",
        "tcp:0:interface=127.0.0.1",
        "tcp:9000:interface=127.0.0.1:backlog=4096",
        "tcp:9000:backlog=7:interface=\\:\\:1",
        "tcp:9000:10.0.0.1:12",
        "tcp6:8080",
        "tcp6:8080:interface=\\:\\:1",
        "tcp6:8080:11:\\:\\:1",
        "tcp6:8080:interface=fe80\\:\\:1%lo:backlog=3",
        "tcp:80:interface=\\3\\0.0.0.1",
    ],
)
def test_the_address_is_the_one_twisted_listens_on(description: str) -> None:
    reactor = MemoryReactor()
    serverFromString(reactor, description).listen(Factory())  # type: ignore[no-untyped-call]
    [(port, _, backlog, interface)] = reactor.tcpServers
    address = Address.parse(description)
    assert (address.port, address.backlog) == (port, backlog)
    # Twisted leaves an empty interface for listenTCP to read as "any".
    assert address.interface == (interface or "0.0.0.0")


@pytest.mark.parametrize(
    ("description", "family"),
    [
        ("tcp:0:interface=\\:\\:1", socket.AF_INET6),
        ("tcp:0", socket.AF_INET),
        ("tcp6:0", socket.AF_INET6),
        ("tcp6:0:interface=127.0.0.1", socket.AF_INET),
    ],
)
def test_the_family_comes_from_the_interface(description: str, family: int) -> None:
    # As Twisted's tcp.Port chooses it: the prefix only picks the default interface.
    assert Address.parse(description).family == family


def test_the_description_round_trips() -> None:
    address = Address.parse("tcp:0:interface=\\:\\:1:backlog=9")
    assert Address.parse(address.description()) == address


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ("tcp:http", "the port must be a whole number from 0 to 65535, not 'http'"),
        ("tcp:65536", "the port must be a whole number from 0 to 65535, not '65536'"),
        ("tcp:80:backlog=0", "the backlog must be a whole number 1 or more, not '0'"),
        ("tcp:80:interface=localhost", "must be an IPv4 or IPv6 address, not 'localhost'"),
        ("tcp:80:reuse=1", "tcp endpoints take no reuse="),
        ("tcp:interface=\\:\\:1", "the port is missing"),
        ("tcp:80:interface=::1", "interface is given twice (write each : of an IPv6 address"),
        ("unix:/tmp/x", "only tcp and tcp6 endpoints can be shared, not 'unix'"),
    ],
)
def test_a_wrong_field_is_named(description: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        Address.parse(description)
    assert message in str(raised.value)
