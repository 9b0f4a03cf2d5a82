"""
Build the API reference with pydoctor, as CI does (``bash .ci/run``)::

    .venv/bin/pip install -e '.[docs]'
    .venv/bin/python docs/api/build.py [OUTPUT]     # default build/api/

Fails (exit 1) on any pydoctor warning, and on any public name without a
docstring. The public API is what ``twisted_keepalive`` exports and
``twisted_keepalive.metrics`` and ``twisted_keepalive.web``; the ``core``,
``autobahn`` and ``glue`` modules (and the web adapter's internals) are
documented too, as private (the reference's "show private" switch), since
their names may change between releases. The ``server`` package is left out:
its interface is the command line, ``twistd wskeepalive --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydoctor import model
from pydoctor.driver import get_system, make
from pydoctor.options import Options

import twisted_keepalive

REPO = Path(__file__).resolve().parents[2]

PRIVACY = [
    "HIDDEN:twisted_keepalive.server",
    "PRIVATE:twisted_keepalive.core",
    "PRIVATE:twisted_keepalive.autobahn",
    # Exported by twisted_keepalive, defined here: public all the same.
    "PUBLIC:twisted_keepalive.autobahn.mixin",
    "PUBLIC:twisted_keepalive.autobahn.mixin.KeepaliveMixin",
    # Framing-neutral Twisted glue under both adapters: internal, like core.
    "PRIVATE:twisted_keepalive.glue",
    # The twisted.web.websocket adapter is public: what it exports
    # (with_keepalive, KeepaliveFactory, KeepaliveProtocol, the
    # KeepaliveTransport the application gets) is documented in the package
    # itself.  The modules it stands on may change between releases.
    "PRIVATE:twisted_keepalive.web.link",
    "PRIVATE:twisted_keepalive.web.frames",
    "PRIVATE:twisted_keepalive.web.hooks",
    "PRIVATE:twisted_keepalive.web.protocol",
]


def options(output: Path) -> Options:
    return Options.from_args(
        [
            "--project-name=twisted-keepalive",
            f"--project-version={twisted_keepalive.__version__}",
            f"--project-base-dir={REPO}",
            "--docformat=restructuredtext",
            f"--html-output={output}",
            "--warnings-as-errors",
            "--quiet",
            *(f"--privacy={rule}" for rule in PRIVACY),
            str(REPO / "twisted_keepalive"),
        ]
    )


def _public(ob: model.Documentable) -> bool:
    current: model.Documentable | None = ob
    while current is not None:
        if current.privacyClass is not model.PrivacyClass.PUBLIC:
            return False
        current = current.parent
    return True


def undocumented(system: model.System) -> list[str]:
    """Public names with no docstring (dunder methods inherit their meaning)."""
    missing = []
    for ob in system.allobjects.values():
        name = ob.name
        if name.startswith("__") and name.endswith("__") and name != "__version__":
            continue
        if _public(ob) and ob.docstring is None and ob.parsed_docstring is None:
            missing.append(ob.fullName())
    return sorted(missing)


def main(argv: list[str]) -> int:
    output = Path(argv[0]) if argv else REPO / "build" / "api"
    opts = options(output)
    system = get_system(opts)
    missing = undocumented(system)
    for name in missing:
        print(f"{name}: a public name without a docstring")
    try:
        make(system)
    except SystemExit as exit:  # pydoctor exits 3 on warnings with -W
        if exit.code:
            return 1
    if system.violations:
        return 1
    if missing:
        return 1
    print(f"API reference: {output / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
