"""
The framing's floor: Autobahn, one shared LoopingCall that calls sendPing on
every open connection each interval; Pongs are parsed by Autobahn and ignored.
The 4-byte payload matches what KeepaliveMixin sends.
"""

import _autobahn
from _common import parse_args
from twisted.internet.task import LoopingCall

PAYLOAD = b"\x00\x00\x00\x01"

args = parse_args(__doc__)
made = _autobahn.factory(args, _autobahn.Registry)


def ping_all() -> None:
    for protocol in made.open:
        protocol.sendPing(PAYLOAD)


LoopingCall(ping_all).start(args.interval, now=False)
_autobahn.serve(args, made)
