"""
The server's cheap stand-in for the debug formatting Autobahn does on every
connection (:mod:`twisted_keepalive.server.autobahn_debug`).
"""

from __future__ import annotations

import pprint
from pathlib import Path

import autobahn.websocket.protocol as autobahn_protocol
import pytest

from twisted_keepalive.server import autobahn_debug


@pytest.fixture
def restore_pformat() -> object:
    saved = autobahn_protocol.__dict__.get("pformat")
    yield saved
    if saved is not None:
        autobahn_protocol.pformat = saved  # type: ignore[attr-defined]


def test_autobahn_still_formats_its_options_with_its_own_pformat_name() -> None:
    # The route the server takes: if Autobahn stops importing pformat into
    # its protocol module (or stops formatting its options on every
    # connection), this fails and autobahn_debug must be revisited.
    source = Path(autobahn_protocol.__file__).read_text(encoding="utf-8")
    assert "from pprint import pformat" in source
    assert "pformat(configAttrLog)" in source


def test_the_server_swaps_in_one_line_formatting_that_keeps_the_facts(
    restore_pformat: object,
) -> None:
    options = [("autoPingInterval", 0, "ServerFactory"), ("openHandshakeTimeout", 5, "X")]
    assert autobahn_debug.plain_debug_formatting() is True
    formatted = autobahn_protocol.pformat(options)  # type: ignore[attr-defined]
    assert formatted == repr(options) and "\n" not in formatted
    assert pprint.pformat is not autobahn_protocol.pformat  # type: ignore[attr-defined]


def test_without_the_name_nothing_is_changed(
    restore_pformat: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(autobahn_protocol, "pformat")
    assert autobahn_debug.plain_debug_formatting() is False
    assert not hasattr(autobahn_protocol, "pformat")
