"""
Twisted's framing's floor: twisted.web.websocket, one shared LoopingCall that
calls Twisted's own ``ping()`` on every open connection each interval; Pongs
are parsed by wsproto and ignored.  The 4-byte payload matches ours.
"""

import _twisted_web
from _common import parse_args
from twisted.internet.task import LoopingCall

PAYLOAD = b"\x00\x00\x00\x01"

args = parse_args(__doc__)
factory = _twisted_web.RegistryFactory()


def ping_all() -> None:
    for protocol in factory.open:
        protocol.transport.ping(PAYLOAD)


LoopingCall(ping_all).start(args.interval, now=False)
_twisted_web.serve(args, factory)
