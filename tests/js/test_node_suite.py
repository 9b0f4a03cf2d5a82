"""
The unit tests of the browser module ``keepalive.js`` (``tests/js/*.test.mjs``)
run under Node's own test runner; this runs them from pytest, so that the
project's one test command covers them too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.realpeers import NODE

HERE = Path(__file__).parent


@pytest.mark.skipif(
    NODE is None, reason="Node.js is not installed: keepalive.js is tested with `node --test`"
)
def test_keepalive_js_unit_tests_pass_under_node() -> None:
    assert NODE is not None
    files = sorted(str(path) for path in HERE.glob("*.test.mjs"))
    assert files, "no tests/js/*.test.mjs"
    # Files, not the directory: newer Node versions read arguments as globs.
    result = subprocess.run(
        [NODE, "--test", "--test-reporter=tap", *files],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.MULTILINE)
    assert passed is not None and int(passed.group(1)) > 0, result.stdout
    assert re.search(r"^# fail 0$", result.stdout, re.MULTILINE), result.stdout
