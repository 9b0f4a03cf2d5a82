"""
README.md leads an adopter to the API reference, and says of it what
``docs/api/build.py`` builds: which modules are public, which are documented
as private, which are left out.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
BUILD = (REPO / "docs" / "api" / "build.py").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"no '## {title}' section in README.md"
    return match.group(1)


def test_the_top_of_the_readme_links_the_api_reference() -> None:
    top = README[: README.index("\n## ")]
    assert "[API reference](#api-reference)" in top
    assert "docs/api/build.py" in section("API reference")


def test_the_readme_names_the_modules_the_reference_makes_private_and_hides() -> None:
    text = section("API reference")
    for kind in ("PRIVATE", "HIDDEN"):
        # Top-level modules only: the web adapter's internals are its own business.
        for module in re.findall(rf'"{kind}:twisted_keepalive\.(\w+)"', BUILD):
            assert f"`{module}`" in text, (kind, module)
    for public in ("twisted_keepalive", "twisted_keepalive.metrics", "twisted_keepalive.web"):
        assert f"`{public}`" in text, public
