"""
``keepalive.js`` as a front-end package: what ``npm pack`` of
``twisted_keepalive/static`` gives a project that installs it, and its types.

The module is the one source: ``keepalive.d.ts`` is generated from its JSDoc
by ``tsc`` (regenerate with ``bash .ci/types --write``), ``keepalive.cjs`` only
hands it to ``require()``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import twisted_keepalive
from tests.realpeers import NODE, PEERS

HERE = Path(__file__).parent
REPO = HERE.parents[1]
STATIC = REPO / "twisted_keepalive" / "static"
TSC = PEERS / "node_modules" / ".bin" / "tsc"
NPM = shutil.which("npm")

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None or not TSC.exists(),
    reason="needs Node.js, npm and TypeScript (npm ci in tests/peers)",
)

#: The compiler options keepalive.js is checked and its declarations made with.
TSC_OPTIONS = ["--strict", "--allowJs", "--target", "es2022", "--lib", "es2022,dom",
               "--module", "es2022"]  # fmt: skip


def run(*argv: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
        check=False,
    )


def test_keepalive_js_passes_tsc_strict_check_js_with_no_error() -> None:
    result = run(TSC, *TSC_OPTIONS, "--checkJs", "--noEmit", STATIC / "keepalive.js")
    assert (result.returncode, result.stdout) == (0, "")


def test_the_declarations_are_the_ones_tsc_generates_from_the_module(tmp_path: Path) -> None:
    result = run(TSC, *TSC_OPTIONS, "--declaration", "--emitDeclarationOnly",
                 "--outDir", tmp_path, STATIC / "keepalive.js")  # fmt: skip
    assert result.returncode == 0, result.stdout
    generated = (tmp_path / "keepalive.d.ts").read_text()
    assert (STATIC / "keepalive.d.ts").read_text() == generated, "run: bash .ci/types --write"
    assert "get latency(): number | null;" in generated


def test_every_public_declaration_is_documented_once() -> None:
    # The declarations are the module's API reference in an editor: every
    # export and every public member of its classes says what it is, in one
    # JSDoc block (an editor shows only the last of several).
    result = run(NODE or "node", HERE / "undocumented.cjs", PEERS / "node_modules" / "typescript",
                 STATIC / "keepalive.d.ts")  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "")


def test_the_package_version_is_the_python_version() -> None:
    package = json.loads((STATIC / "package.json").read_text())
    assert package["version"] == twisted_keepalive.__version__
    assert package["license"] == "MIT"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("pack")
    result = run(NPM or "npm", "pack", "--pack-destination", out, cwd=STATIC)
    assert result.returncode == 0, result.stdout
    (packed,) = out.glob("twisted-keepalive-*.tgz")
    yield packed


def test_npm_pack_holds_the_module_its_types_and_entries_only(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        names = sorted(archive.getnames())
    assert names == [
        "package/keepalive.cjs",
        "package/keepalive.d.ts",
        "package/keepalive.js",
        "package/package.json",
    ]


def project(tmp_path: Path, tarball: Path, kind: str) -> Path:
    """A scratch Node project of ``"type": kind`` with the tarball installed."""
    root = tmp_path / kind
    root.mkdir()
    (root / "package.json").write_text(json.dumps({"name": "scratch", "private": True,
                                                   "type": kind}))  # fmt: skip
    result = run(NPM or "npm", "install", "--no-audit", "--no-fund", "--offline", tarball, cwd=root)
    assert result.returncode == 0, result.stdout
    return root


USE = "const socket = typeof KeepaliveSocket; console.log(socket, PROTOCOL_VERSION);"


def test_a_commonjs_project_can_require_and_import_it(tmp_path: Path, tarball: Path) -> None:
    root = project(tmp_path, tarball, "commonjs")
    (root / "required.js").write_text(
        f"const {{ KeepaliveSocket, PROTOCOL_VERSION }} = require('twisted-keepalive');\n{USE}\n"
    )
    (root / "imported.js").write_text(
        "import('twisted-keepalive').then(({ KeepaliveSocket, PROTOCOL_VERSION }) => {"
        f" {USE} }});\n"
    )
    for script in ("required.js", "imported.js"):
        result = run(NODE or "node", script, cwd=root)
        last_line = result.stdout.splitlines()[-1]
        assert (result.returncode, last_line) == (0, "function 1"), result.stdout


def test_require_without_require_esm_fails_saying_what_to_do(tmp_path: Path, tarball: Path) -> None:
    # Nodes before 20.19 cannot require() an ES module; this one can be told not to.
    root = project(tmp_path, tarball, "commonjs")
    result = run(NODE or "node", "--no-experimental-require-module", "-e",
                 "require('twisted-keepalive')", cwd=root)  # fmt: skip
    assert result.returncode != 0
    assert "load it with import('twisted-keepalive')" in result.stdout


def test_an_es_module_project_imports_it(tmp_path: Path, tarball: Path) -> None:
    root = project(tmp_path, tarball, "module")
    (root / "main.js").write_text(
        f"import {{ KeepaliveSocket, PROTOCOL_VERSION }} from 'twisted-keepalive';\n{USE}\n"
    )
    result = run(NODE or "node", "main.js", cwd=root)
    assert (result.returncode, result.stdout.strip()) == (0, "function 1"), result.stdout


TYPED_USE = """
import { KeepaliveSocket, KeepaliveCloseEvent } from 'twisted-keepalive';
import type { KeepaliveSocketOptions } from 'twisted-keepalive';

const options: KeepaliveSocketOptions = { pingInterval: 5000, maxRetries: 10 };
const socket = new KeepaliveSocket(() => Promise.resolve('wss://example.test/'), options);
const latency: number | null = socket.latency;
socket.addEventListener('close', (event) => {
  const delay: number | null = (event as KeepaliveCloseEvent).reconnectDelay;
  console.log(delay, latency);
});
socket.reconnect();
// @ts-expect-error: the options are checked
new KeepaliveSocket('wss://example.test/', { pingIntervall: 5 });
"""


def test_a_typescript_project_type_checks_against_its_declarations(
    tmp_path: Path, tarball: Path
) -> None:
    root = project(tmp_path, tarball, "module")
    (root / "main.ts").write_text(TYPED_USE)
    options = ["--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022"]
    result = run(TSC, "--strict", "--noEmit", *options, "--lib", "es2022,dom", "main.ts", cwd=root)
    assert (result.returncode, result.stdout) == (0, "")
