"""
The endpoint options (``--listen``, ``--metrics``) checked at option time,
so that what would fail at start-up with a traceback is one usage line:
the string parses, the port is 0-65535, the interface is an address of this
machine, the port is free (a trial bind), a socket's folder exists, TLS keys
load.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python import usage

__all__ = ["endpoint_fields", "listen_description", "metrics_endpoint"]

#: The endpoint types whose string syntax takes ``backlog=``.
_BACKLOG_ENDPOINT_TYPES = frozenset({"tcp", "tcp6", "ssl", "unix"})

# Typed names for the Twisted APIs that have no annotations.
_server_from_string: Callable[[Any, str], IStreamServerEndpoint] = endpoints.serverFromString


def metrics_endpoint(description: str | None) -> str | None:
    if description is None:
        return None
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise usage.UsageError(
            "--metrics needs prometheus_client: pip install 'twisted-keepalive[metrics]'"
        ) from None
    _check_endpoint("metrics", description)
    return description


def listen_description(description: str, backlog: int, *, shared: bool = False) -> str:
    """
    ``description`` with the backlog filled in, once it proved usable.

    :param shared: the port is one a ``--workers`` parent reserved for its
        workers (this is a worker checking its options): bound already, with
        ``SO_REUSEPORT``, and free to bind beside.
    """
    full = _with_backlog(description, backlog)
    _check_endpoint("listen", description, full, shared=shared)
    return full


#: The endpoint types with a TCP port, and where the port may be written.
_PORT_ENDPOINT_TYPES = frozenset({"tcp", "tcp6", "ssl"})


def _port_problem(description: str, shared: bool) -> str | None:
    # serverFromString takes any integer as a port, any text as an
    # interface, any path for a socket; listening fails only at start-up,
    # with a traceback.  Trying a socket now makes each a usage error.
    kind, *fields = endpoint_fields(description)
    if kind == "unix":
        path = _field(fields, "address") or next((f for f in fields if "=" not in f), "")
        folder = os.path.dirname(os.path.abspath(path)) if path else ""
        if folder and not os.path.isdir(folder):
            return f"the folder {folder} does not exist"
        return None
    if kind not in _PORT_ENDPOINT_TYPES:
        return None
    given = _field(fields, "port") or next((f for f in fields if "=" not in f), None)
    if given is None:
        return None  # serverFromString names what is missing
    try:
        port = int(given)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        return f"the port must be a whole number from 0 to 65535, not {given!r}"
    return _bind_problem(_field(fields, "interface") or "", port, kind == "tcp6", shared)


def _bind_problem(interface: str, port: int, ipv6: bool, shared: bool) -> str | None:
    # What listenTCP will do: bind with SO_REUSEADDR, the family from the
    # interface's address.  SO_REUSEPORT only in a worker, whose port its
    # parent holds: anywhere else a port bound with it is another server's
    # (another --workers server would otherwise join it silently, same user).
    try:
        family, *_, address = socket.getaddrinfo(
            interface or ("::" if ipv6 else "0.0.0.0"), port, type=socket.SOCK_STREAM
        )[0]
    except (OSError, UnicodeError) as e:
        return f"the interface {interface!r} is not an address: {_one_line(e)}"
    with socket.socket(family, socket.SOCK_STREAM) as trial:
        trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared and hasattr(socket, "SO_REUSEPORT"):
            trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            trial.bind(address)
        except OSError as e:
            where = f"{interface or 'every interface'} port {port}"
            return f"cannot listen on {where}: {e.strerror or _one_line(e)}"
    return None


def _field(fields: list[str], name: str) -> str | None:
    # Endpoint strings escape ":" as "\:" (an IPv6 interface).
    for field in fields:
        key, sep, value = field.partition("=")
        if sep and key == name:
            return value.replace("\\:", ":")
    return None


def _check_endpoint(
    option: str, description: str, built: str | None = None, *, shared: bool = False
) -> None:
    # Building the endpoint parses the string and loads TLS keys and
    # certificates: a typo fails here, as a usage error, not at startup.
    from twisted.internet import reactor

    problem = _port_problem(description, shared)
    if problem is not None:
        raise usage.UsageError(f"--{option} {description!r} is not a usable endpoint: {problem}")

    try:
        _server_from_string(reactor, built or description)
    except ImportError as e:
        hint = (
            " (ssl endpoints need pyOpenSSL: pip install twisted[tls])"
            if e.name == "OpenSSL"
            else ""
        )
        raise usage.UsageError(f"--{option} {description!r}: {_one_line(e)}{hint}") from None
    except Exception as e:
        # Endpoint parsers, plugins included, raise whatever they like:
        # ValueError, TypeError, KeyError, OSError, OpenSSL errors...
        raise usage.UsageError(
            f"--{option} {description!r} is not a usable endpoint: {_one_line(e)}"
        ) from None


def _with_backlog(description: str, backlog: int) -> str:
    kind, *fields = endpoint_fields(description)
    if kind not in _BACKLOG_ENDPOINT_TYPES or any(f.startswith("backlog=") for f in fields):
        return description
    return f"{description}:backlog={backlog}"


def endpoint_fields(description: str) -> Iterator[str]:
    """The ``:``-separated fields of an endpoint string (``\\:`` escapes a colon)."""
    current = ""
    escaped = False
    for char in description:
        if char == ":" and not escaped:
            yield current
            current = ""
        else:
            current += char
        escaped = char == "\\" and not escaped
    yield current


def _one_line(error: BaseException) -> str:
    # twistd prints the message after the usage hint: one line.
    return " ".join(str(error).split())
