"""Autobahn's own auto-ping: setProtocolOptions(autoPingInterval, autoPingTimeout)."""

import _autobahn
from _common import parse_args

args = parse_args(__doc__)
made = _autobahn.factory(args, _autobahn.WebSocketServerProtocol)
made.setProtocolOptions(autoPingInterval=args.interval, autoPingTimeout=args.timeout)
_autobahn.serve(args, made)
