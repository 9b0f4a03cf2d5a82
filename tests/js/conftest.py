"""The ``twistd`` fixture of the interop suite: a real ``twistd -n wskeepalive``."""

from tests.interop.conftest import twistd

__all__ = ["twistd"]
