"""
The package reads at a glance: no import cycle anywhere in
``twisted_keepalive`` (read from the source, as Python would import it: the
imports under ``if TYPE_CHECKING:`` never run), no module of the server
package over about 300 lines, and a plugin file of a few lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "twisted_keepalive"

#: Lines a module of the server package may have ("about 300").
MAX_SERVER_MODULE_LINES = 300

#: Lines of ``twisted/plugins/wskeepalive.py``: the plugin object and its docstring.
MAX_PLUGIN_LINES = 20


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    # Every import statement but those inside ``if TYPE_CHECKING:``.
    def walk(nodes: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                yield from walk(node.orelse)
                continue
            for child in ast.walk(node):
                if isinstance(child, ast.Import | ast.ImportFrom):
                    yield child

    yield from walk(tree.body)


def imported_by(module: str) -> set[str]:
    """The modules of the package that ``module`` imports when it runs."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = package.split(".")[: len(package.split(".")) - max(0, node.level - 1)]
        if node.level:
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            assert node.module is not None
            source = node.module
        # ``from . import hooks`` imports the module hooks; ``from .x import
        # name`` imports x.
        submodules = {f"{source}.{alias.name}" for alias in node.names} & MODULES.keys()
        found |= submodules or {source}
    return {name for name in found if name in MODULES and name != module}


def cycles() -> list[list[str]]:
    """Every set of modules that import each other, however indirectly (Tarjan)."""
    graph = {module: imported_by(module) for module in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_the_reader_of_imports_sees_the_server_s_own() -> None:
    # The check below is only as good as this reader.
    assert "twisted_keepalive.server.options" in imported_by("twisted_keepalive.server.twistd")
    assert "twisted_keepalive.server.workers.supervisor" in imported_by(
        "twisted_keepalive.server.twistd"
    )
    assert "twisted_keepalive.server.health" in imported_by("twisted_keepalive.server.service")


def test_no_module_of_the_package_imports_itself_through_others() -> None:
    assert cycles() == []


@pytest.mark.parametrize(
    "module",
    [name for name in MODULES if name.startswith("twisted_keepalive.server")],
)
def test_no_server_module_is_over_about_300_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_SERVER_MODULE_LINES, f"{MODULES[module].relative_to(REPO)}: {lines} lines"


def test_the_plugin_file_is_a_few_lines() -> None:
    [plugin] = (REPO / "twisted" / "plugins").glob("*.py")
    lines = plugin.read_text().splitlines()
    assert len(lines) <= MAX_PLUGIN_LINES
    # Only the plugin object: the server is imported when twistd asks for it.
    assert [line for line in lines if line.startswith(("import", "from"))] == [
        "from twisted.application.service import ServiceMaker"
    ]
