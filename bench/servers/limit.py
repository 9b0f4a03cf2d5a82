"""
The limit: like floor, but each Ping is one ready-made frame handed to the
kernel with a single send(), past Twisted's write buffer (no epoll
register/unregister).  Only safe while the transport holds nothing unsent,
else bytes would overtake each other: then it falls back to transport.write.
Plain TCP only; a benchmark, not a pattern for the library as is.
"""

import _autobahn
from _common import parse_args
from twisted.internet.task import LoopingCall

PAYLOAD = b"\x00\x00\x00\x01"
FRAME = bytes([0x89, len(PAYLOAD)]) + PAYLOAD  # FIN | Ping, unmasked

args = parse_args(__doc__)
made = _autobahn.factory(args, _autobahn.Registry)
stats = {"direct": 0, "buffered": 0}


def ping_all() -> None:
    for protocol in made.open:
        transport = protocol.transport
        if not (transport.dataBuffer or transport._tempDataBuffer):
            try:
                sent = transport.socket.send(FRAME)
            except BlockingIOError:
                sent = 0
            except OSError:
                continue  # the connection is going; Twisted will notice
            if sent == len(FRAME):
                stats["direct"] += 1
                continue
            transport.write(FRAME[sent:])
        else:
            transport.write(FRAME)
        stats["buffered"] += 1


LoopingCall(ping_all).start(args.interval, now=False)
_autobahn.serve(args, made)
