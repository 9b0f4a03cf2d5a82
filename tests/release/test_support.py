"""
The support the package declares is the support CI proves: the Pythons and
the lower bounds in ``pyproject.toml`` and the two READMEs against the cells
of ``.ci/matrix.txt`` (which ``.ci/matrix`` runs), and the claim about other
systems against an import with their missing modules blocked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
#: The Python packages whose oldest releases the matrix pins.
BOUNDED = ("twisted", "autobahn", "prometheus_client")


def cells() -> dict[str, tuple[str, dict[str, str]]]:
    """NAME → (Python X.Y, {package: pinned version})."""
    found = {}
    for line in (REPO / ".ci" / "matrix.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, python, *pins = line.split()
        version = re.search(r"3\.\d+", python)
        assert version is not None, line
        found[name] = (version.group(), dict(pin.split("==") for pin in pins))
    return found


def lower_bound(package: str, python: str) -> str:
    """The oldest release of ``package`` that pyproject.toml allows on ``python``."""
    requirements = PROJECT["dependencies"] + PROJECT["optional-dependencies"]["metrics"]
    bounds = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.name.replace("-", "_") != package:
            continue
        if requirement.marker and not requirement.marker.evaluate({"python_version": python}):
            continue
        bounds += [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert bounds, f"no lower bound for {package} on Python {python}"
    return str(max(bounds))


def declared_pythons() -> list[str]:
    prefix = "Programming Language :: Python :: "
    return sorted(
        (c[len(prefix) :] for c in PROJECT["classifiers"] if re.fullmatch(prefix + r"3\.\d+", c)),
        key=Version,
    )


def test_the_pythons_declared_are_the_pythons_tested() -> None:
    tested = sorted({python for python, _ in cells().values()}, key=Version)
    assert declared_pythons() == tested
    assert PROJECT["requires-python"] == f">={tested[0]}"


def test_every_python_is_tested_with_the_oldest_and_the_newest_dependencies() -> None:
    for python in declared_pythons():
        assert cells().get(f"newest-py{python}", (None, None))[1] == {}, (
            f"no newest-dependencies cell for Python {python}"
        )
        assert f"oldest-py{python}" in cells(), f"no oldest-dependencies cell for Python {python}"
        _, pins = cells()[f"oldest-py{python}"]
        for package in BOUNDED:
            assert pins.get(package) == lower_bound(package, python), (python, package)
        assert "txaio" in pins, "Autobahn's own lower bound on txaio is tested too"


def test_the_web_adapter_is_tested_at_the_floor_of_its_extra() -> None:
    # The oldest cells have a Twisted without twisted.web.websocket: one cell
    # runs the web adapter's tests on the oldest Twisted the `web` extra
    # allows, with the oldest wsproto the test extra allows.
    (web,) = [Requirement(r) for r in PROJECT["optional-dependencies"]["web"]]
    (wsproto,) = [
        Requirement(r) for r in PROJECT["optional-dependencies"]["test"] if r.startswith("wsproto")
    ]
    floor = {
        "twisted": [s.version for s in web.specifier if s.operator == ">="],
        "wsproto": [s.version for s in wsproto.specifier if s.operator == ">="],
    }
    python, pins = cells()["oldest-web-py3.10"]
    assert python in declared_pythons()
    assert Version(pins["twisted"]) == Version(*floor["twisted"])
    assert Version(pins["wsproto"]) == Version(*floor["wsproto"])
    for package in ("autobahn", "txaio", "prometheus_client"):
        assert pins[package] == cells()[f"oldest-py{python}"][1][package], package


def support_block(readme: str) -> str:
    text = (REPO / readme).read_text()
    match = re.search(r"<!-- support-matrix.*?-->\n(.*?)<!-- /support-matrix -->", text, re.S)
    assert match, f"no support-matrix block in {readme}"
    return match.group(1)


def test_both_readmes_state_the_matrix_that_is_tested() -> None:
    block = support_block("README.md")
    assert support_block("README.pypi.md") == block
    for python in declared_pythons():
        assert python in block
    for _, pins in cells().values():
        for package, version in pins.items():
            assert version in block, (package, version)
    # Below it, the oldest cells skip the web adapter's tests: the table says why.
    (web,) = [Requirement(r) for r in PROJECT["optional-dependencies"]["web"]]
    (floor,) = [s.version for s in web.specifier if s.operator == ">="]
    assert f"`web` adapter's tests skip, as it needs Twisted {floor}" in block


def test_the_one_system_declared_is_the_one_tested() -> None:
    # CI runs on Linux only: the metadata says nothing broader, and the
    # table says what is known of the rest (the import test below).
    systems = [c for c in PROJECT["classifiers"] if c.startswith("Operating System ::")]
    assert systems == ["Operating System :: POSIX :: Linux"]
    assert sys.platform.startswith("linux")
    row = next(line for line in support_block("README.md").splitlines() if "| systems |" in line)
    assert "Linux only" in row
    assert "`fcntl` and `termios`" in row


BLOCKED_IMPORT = """
import importlib, pkgutil, socket, sys
sys.modules["fcntl"] = None
sys.modules["termios"] = None
import twisted_keepalive
from twisted_keepalive.autobahn import transport
for module in pkgutil.walk_packages(twisted_keepalive.__path__, "twisted_keepalive."):
    importlib.import_module(module.name)

class Transport:
    def __init__(self, sock):
        self.sock = sock
    def getHandle(self):
        return self.sock

a, b = socket.socketpair()
a.sendall(b"x")
print(transport.kernel_unsent(Transport(a)))
"""


def test_the_package_imports_without_fcntl_and_termios() -> None:
    # What Windows lacks: every module imports, and the kernel send-queue
    # probe says "cannot tell" (None) instead of failing.
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "None"


def test_the_browser_module_row_names_the_node_and_packages_ci_tests_with() -> None:
    # What tests/js runs keepalive.js with: the machine's Node (CI installs
    # Debian's when there is none), and tests/peers' locked ws, undici and
    # TypeScript.
    row = next(line for line in support_block("README.md").splitlines() if "browser module" in line)
    lock = json.loads((REPO / "tests" / "peers" / "package-lock.json").read_text())["packages"]
    for package, label, parts in (("ws", "`ws`", 1), ("undici", "`undici`", 1),
                                  ("typescript", "TypeScript", 2)):  # fmt: skip
        version = ".".join(lock[f"node_modules/{package}"]["version"].split(".")[:parts])
        assert f"{label} {version} " in row, (package, version, row)
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js here to compare the README's with")
    major = subprocess.run(
        [node, "--version"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout.strip().lstrip("v").split(".")[0]
    assert f"Node.js {major} " in row, row
