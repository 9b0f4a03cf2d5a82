"""
The API reference says what an adopter needs of every setting: the public
callables' docstrings give each parameter with a default its default, and
each time its unit. (``docs/api/build.py`` checks that every public name has
a docstring at all; this checks what the docstrings of settings say.)
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
from collections.abc import Iterator

import pytest

#: The public modules, as docs/api/build.py documents them.
PUBLIC = ("twisted_keepalive", "twisted_keepalive.metrics", "twisted_keepalive.web")
#: Parameter names that are times.
TIME = re.compile(r"delay|interval|timeout|window|grace")


def public_callables() -> Iterator[tuple[str, object]]:
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            ob = getattr(module, name)
            # An Enum's signature is Enum's own functional API.
            if (inspect.isclass(ob) and not issubclass(ob, enum.Enum)) or inspect.isfunction(ob):
                yield f"{module_name}.{name}", ob


def field(doc: str, name: str) -> str | None:
    """The text of the ``:param name:`` (or ``:ivar:``, ``:cvar:``) field."""
    match = re.search(rf"^:(?:param|ivar|cvar) {re.escape(name)}:(.*?)(?=^:|\Z)", doc, re.S | re.M)
    return None if match is None else " ".join(match.group(1).split())


def settings() -> Iterator[tuple[str, str, object, str]]:
    """(callable, parameter, default, docstring) for every parameter with a default."""
    for qualified, ob in public_callables():
        try:
            signature = inspect.signature(ob)  # type: ignore[arg-type]
        except ValueError:
            continue
        doc = inspect.getdoc(ob) or ""
        for parameter in signature.parameters.values():
            if parameter.default is not inspect.Parameter.empty:
                yield qualified, parameter.name, parameter.default, doc


def test_there_are_settings_to_check() -> None:
    assert len(list(settings())) > 20


@pytest.mark.parametrize(
    ("qualified", "name", "default", "doc"),
    [pytest.param(*s, id=f"{s[0]}.{s[1]}") for s in settings()],
)
def test_every_setting_says_its_default_and_its_unit(
    qualified: str, name: str, default: object, doc: str
) -> None:
    text = field(doc, name)
    assert text is not None, f"{qualified}: no field for {name}"
    assert "default" in text.lower(), f"{qualified}: {name}: no default in {text!r}"
    if TIME.search(name) and isinstance(default, (int, float)):
        assert "second" in text, f"{qualified}: {name}: no unit in {text!r}"
