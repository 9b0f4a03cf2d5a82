"""
Where Twisted and Autobahn offer no public API, the server and the library
use a private name behind one small, named place; each test here fails the
day that name disappears from the installed release, instead of a server
that silently stops tracking, pinging or exiting cleanly.
"""

from __future__ import annotations

import ast
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
    # ``x._name`` in code (not in docstrings) on anything but our own
    # objects (self, cls) and a namedtuple's public _replace; super()'s only
    # for the dispatchers above: the private names of Twisted or Autobahn
    # objects, which must stay behind the named places above.
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and re.fullmatch(r"_[a-z]\w*", node.attr)):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if node.attr == "_replace":
                continue
            is_super = (
                isinstance(owner, ast.Call)
                and isinstance(owner.func, ast.Name)
                and owner.func.id == "super"
            )
            if is_super and node.attr in AUTOBAHN_DISPATCHERS:
                continue
            found.append(f"{path.relative_to(SERVER)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


@pytest.mark.parametrize("name", ["_exitSignal", "_raiseSynchronously"])
def test_no_private_twisted_attribute_steers_the_exit_or_the_endpoints(name: str) -> None:
    for path in SERVER.rglob("*.py"):
        assert name not in path.read_text(), path
