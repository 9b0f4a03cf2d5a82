"""
What the benchmark scripts share: the environment recorded beside every
figure, and the plain-text table they print.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _git(*command: str) -> str:
    try:
        return subprocess.run(
            ["git", *command], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def library_fingerprint() -> str:
    """A short hash of twisted_keepalive/*.py as measured, committed or not."""
    digest = hashlib.sha1()
    for path in sorted((ROOT / "twisted_keepalive").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def environment(packages: Sequence[str]) -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        # Figures from a library with uncommitted changes: the fingerprint
        # tells such runs apart.
        "library_dirty": bool(_git("status", "--porcelain", "--", "twisted_keepalive")),
        "library_fingerprint": library_fingerprint(),
        "versions": {p: version(p) for p in packages},
    }


def format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells (the first is the header): first column left, the rest right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j])
                for j, cell in enumerate(row)
            ).rstrip()
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    return out
