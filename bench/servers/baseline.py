"""Plain Autobahn, no pings: the cost of holding the connections idle."""

import _autobahn
from _common import parse_args

args = parse_args(__doc__)
_autobahn.serve(args, _autobahn.factory(args, _autobahn.WebSocketServerProtocol))
