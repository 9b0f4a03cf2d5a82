"""
What every benchmark server shares: its command line and the line that tells
bench/cpu_per_ping.py it is listening.

Each server is started as ``python bench/servers/NAME.py --port P --interval S
--timeout S --backlog B [--cert PEM --key PEM]``; with a certificate it serves
``wss://`` (TLS); it prints ``READY`` once it accepts connections and runs
until it is killed.  A server whose library is not installed prints
``SKIP <reason>`` and exits with status 3.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

SKIP_STATUS = 3


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between pings")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for a pong")
    parser.add_argument("--backlog", type=int, default=4096, help="listen() backlog")
    parser.add_argument("--cert", help="PEM certificate: serve TLS (with --key)")
    parser.add_argument("--key", help="PEM private key of --cert")
    return parser.parse_args()


def ssl_context(args: argparse.Namespace) -> Any:
    """The standard library's server TLS context for ``--cert``/``--key``, or ``None``."""
    if not args.cert:
        return None
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    return context


def ready() -> None:
    print("READY", flush=True)


def skip(reason: str) -> None:
    print(f"SKIP {reason}", flush=True)
    sys.exit(SKIP_STATUS)
