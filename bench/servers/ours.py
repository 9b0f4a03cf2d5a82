"""twisted-keepalive's KeepaliveMixin on a plain Autobahn server protocol."""

import _autobahn
from _common import parse_args

from twisted_keepalive import KeepaliveMixin, set_keepalive_options


class Server(KeepaliveMixin, _autobahn.WebSocketServerProtocol):
    pass


args = parse_args(__doc__)
made = _autobahn.factory(args, Server)
set_keepalive_options(made, ping_interval=args.interval, ping_timeout=args.timeout)
_autobahn.serve(args, made)
