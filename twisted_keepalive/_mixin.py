from .autobahn import KeepaliveMixin as KeepaliveMixin
from .autobahn import set_keepalive_options as set_keepalive_options
