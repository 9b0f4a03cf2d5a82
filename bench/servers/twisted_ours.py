"""twisted-keepalive's with_keepalive() on a plain twisted.web.websocket server protocol."""

import _twisted_web
from _common import parse_args

from twisted_keepalive.web import with_keepalive

args = parse_args(__doc__)
factory = with_keepalive(
    _twisted_web.RegistryFactory(), ping_interval=args.interval, ping_timeout=args.timeout
)
_twisted_web.serve(args, factory)
