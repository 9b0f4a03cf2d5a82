"""
Twisted without ``twisted.web.websocket`` (before 25.5, or without wsproto):
the Autobahn side works and never imports the web adapter, and importing the
web adapter says what to install.  Runs on every Twisted the package allows.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: Python that makes this interpreter a Twisted without ``twisted.web.websocket``.
BLOCK_TWISTED_WEBSOCKET = textwrap.dedent(
    """
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name in ("twisted.web.websocket", "wsproto"):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def test_importing_the_web_adapter_without_twisted_websocket_says_what_to_install() -> None:
    script = BLOCK_TWISTED_WEBSOCKET + textwrap.dedent(
        """
        import twisted_keepalive
        from twisted_keepalive import KeepaliveMixin, collect_stats
        assert "twisted_keepalive.web" not in sys.modules, "the Autobahn side imported web"
        assert "wsproto" not in sys.modules
        try:
            import twisted_keepalive.web
        except ImportError as e:
            print(e)
        else:
            raise SystemExit("imported")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    message = result.stdout
    assert "Twisted 25.5 or later" in message
    assert "twisted-keepalive[web]" in message
    assert "KeepaliveMixin" in message
