"""
Where Twisted and Autobahn offer no public API, the server and the library
use a private name behind one small, named place; each test here fails the
day that name disappears from the installed release, instead of a server
that silently stops tracking, pinging or exiting cleanly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol

from twisted_keepalive.autobahn.hooks import (
    HOOKED_METHODS,
    USED_ATTRIBUTES,
    missing_autobahn_names,
    require_autobahn_hooks,
)
from twisted_keepalive.server.tracking import AUTOBAHN_DISPATCHERS, TrackedConnection

SERVER = Path(__file__).resolve().parents[2] / "twisted_keepalive" / "server"


@pytest.mark.parametrize("protocol", [WebSocketServerProtocol, WebSocketClientProtocol])
def test_every_autobahn_name_the_library_hooks_is_there(protocol: type) -> None:
    for name in HOOKED_METHODS + USED_ATTRIBUTES:
        assert hasattr(protocol, name), name
    assert missing_autobahn_names(protocol) == []


def test_a_missing_autobahn_name_is_one_error_naming_it() -> None:
    stripped = type("Stripped", (), {n: None for n in HOOKED_METHODS if n != "_onClose"})
    with pytest.raises(ImportError, match=r"lack _onClose, sendCloseFrame"):
        require_autobahn_hooks(stripped)


def test_the_server_wraps_only_dispatchers_that_are_checked_at_import() -> None:
    # Every Autobahn private method TrackedConnection overrides is named in
    # AUTOBAHN_DISPATCHERS, and those are among the names checked above.
    overridden = {
        name
        for name in vars(TrackedConnection)
        if re.fullmatch(r"_[a-zA-Z]\w*", name) and hasattr(WebSocketServerProtocol, name)
    }
    assert overridden == set(AUTOBAHN_DISPATCHERS)
    assert set(AUTOBAHN_DISPATCHERS) <= set(HOOKED_METHODS)
    for name in AUTOBAHN_DISPATCHERS:
        assert callable(getattr(WebSocketServerProtocol, name)), name


def test_the_server_package_reads_no_other_private_attribute() -> None:
    # ``x._name`` on anything but our own objects (self, cls, super()) and a
    # namedtuple's public _replace: the private names of Twisted or
    # Autobahn objects, which must stay behind the named places above.
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for match in re.finditer(r"([\w)\]]+)\.(_[a-z]\w*)", code):
                owner, name = match.groups()
                if owner in ("self", "cls") or name == "_replace":
                    continue
                if owner.endswith(")") and "super()" in code and name in AUTOBAHN_DISPATCHERS:
                    continue
                found.append(f"{path.relative_to(SERVER)}:{number}: {line.strip()}")
    assert found == []


@pytest.mark.parametrize("name", ["_exitSignal", "_raiseSynchronously"])
def test_no_private_twisted_attribute_steers_the_exit_or_the_endpoints(name: str) -> None:
    for path in SERVER.rglob("*.py"):
        assert name not in path.read_text(), path
