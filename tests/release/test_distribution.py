"""
What an adopter gets from the package index: the sdist and the wheel built
from this checkout exactly as a release would be (``python -m build``, which
builds the wheel *from the sdist*, so a file the sdist forgets is missing
from the wheel too), and the metadata they carry.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest
import tomllib

import twisted_keepalive

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "twisted_keepalive" / "static"


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    log: str

    def wheel_names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return set(archive.namelist())

    def sdist_names(self) -> set[str]:
        with tarfile.open(self.sdist) as archive:
            # Strip the top folder, twisted_keepalive-X.Y.Z/.
            return {name.partition("/")[2] for name in archive.getnames()}

    def metadata(self) -> Message:
        with zipfile.ZipFile(self.wheel) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            return HeaderParser().parsestr(archive.read(name).decode())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPO)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    yield Built(sdist, wheel, result.stdout)


def test_the_build_gives_no_setuptools_warning(built: Built) -> None:
    # setuptools warns, among others, of data folders missing from
    # `packages` that a future release "would ignore": a warning today is a
    # release whose static assets silently vanish later.
    # distutils' note that the build does not byte-compile (wheels never
    # carry .pyc files) is the one line that says "warning" and is not one.
    warnings = [
        line
        for line in built.log.splitlines()
        if re.search(r"warning", line, re.I) and "byte-compiling is disabled" not in line
    ]
    assert warnings == []


def test_sdist_and_wheel_carry_the_licence_and_the_changelog(built: Built) -> None:
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    assert {"LICENSE", "CHANGELOG.md"} <= built.sdist_names()
    with zipfile.ZipFile(built.wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(name).decode() == licence
    assert built.metadata()["License-Expression"] == "MIT"


def test_wheel_carries_every_static_asset_and_the_plugin(built: Built) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "twisted_keepalive/static"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout.split()
    assert "twisted_keepalive/static/keepalive.js" in tracked
    names = built.wheel_names()
    assert set(tracked) <= names
    assert {"twisted_keepalive/py.typed", "twisted/plugins/wskeepalive.py"} <= names
    assert "twisted/plugins/__init__.py" not in names, "it would replace Twisted's own"


def test_wheel_carries_every_tracked_file_of_the_packages(built: Built) -> None:
    # `packages` is a list, so that no data folder is dropped: a package
    # folder added later and not listed there would be missing instead.
    tracked = subprocess.run(
        ["git", "ls-files", "twisted_keepalive", "twisted"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout.split()
    assert len(tracked) > 50
    assert sorted(set(tracked) - built.wheel_names()) == []
    assert sorted(set(tracked) - built.sdist_names()) == []


def test_version_is_written_once_and_the_changelog_has_it(built: Built) -> None:
    version = twisted_keepalive.__version__
    assert built.metadata()["Version"] == version
    assert built.wheel.name.startswith(f"twisted_keepalive-{version}-")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project, "the version belongs in twisted_keepalive/__init__.py"
    assert "version" in project["dynamic"]
    # Keep a Changelog: the version is either released (a dated heading) or
    # the one the [Unreleased] section at the top is to become.
    changelog = (REPO / "CHANGELOG.md").read_text()
    sections = re.split(r"^## ", changelog, flags=re.M)[1:]
    assert sections, "no release sections"
    released = re.compile(rf"\[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}\n")
    top = sections[0]
    assert released.match(top) or (
        top.startswith("[Unreleased]") and f"**{version}**" in top.split("###")[0]
    ), top[:200]


def test_package_index_description_needs_no_checkout(built: Built) -> None:
    # A package index renders the long description alone: a relative link or
    # image there points nowhere.
    metadata = built.metadata()
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "KeepaliveMixin" in description
    targets = re.findall(r"\]\(([^)\s]+)", description) + re.findall(
        r"""(?:src|href)=["']([^"']+)""", description
    )
    assert targets, "expected some links"
    assert [t for t in targets if not t.startswith("https://")] == []


def test_the_long_description_is_readme_pypi_and_renders_as_the_package_index_does(
    built: Built,
) -> None:
    from readme_renderer.markdown import render  # what the package index renders with

    description = built.metadata().get_payload()
    assert isinstance(description, str)
    assert description.strip() == (REPO / "README.pypi.md").read_text().strip()
    html = render(description, variant="GFM")
    assert html is not None, "the package index would show it as plain text"
    assert html.count("<table>") == 1, "the support matrix renders as a table"
    # The renderer adds in-page anchors to headings; anything else must be absolute.
    targets = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert [t for t in targets if not t.startswith(("https://", "#user-content-"))] == []


def test_metadata_invents_no_project_urls(built: Built) -> None:
    # The project has no public home yet; a Project-URL would point nowhere.
    assert built.metadata().get_all("Project-URL") is None


#: The only kinds of change Keep a Changelog 1.1.0 has, in its order.
CHANGE_KINDS = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")


def test_the_changelog_keeps_the_keep_a_changelog_form() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog\n")
    assert "https://keepachangelog.com/en/1.1.0/" in changelog
    releases = re.split(r"^## ", changelog, flags=re.M)[1:]
    assert releases
    for release in releases:
        heading = release.splitlines()[0]
        assert re.fullmatch(r"\[Unreleased\]|\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", heading)
        kinds = re.findall(r"^### (.*)$", release, flags=re.M)
        assert kinds, f"{heading}: no kind of change"
        # Each kind once, in the format's order, and no other kind.
        assert [k for k in CHANGE_KINDS if k in kinds] == kinds, (heading, kinds)
    assert sum(r.startswith("[Unreleased]") for r in releases) <= 1
    assert not any(r.startswith("[Unreleased]") for r in releases[1:]), "Unreleased goes first"
