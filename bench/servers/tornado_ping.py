"""tornado's websocket_ping_interval / websocket_ping_timeout."""

import asyncio

from _common import parse_args, ready, skip

try:
    from tornado.web import Application
    from tornado.websocket import WebSocketHandler
except ImportError as e:
    skip(f"tornado not installed ({e})")


class Handler(WebSocketHandler):
    def on_message(self, message) -> None:
        pass


async def main(args) -> None:
    app = Application(
        [(r"/", Handler)],
        websocket_ping_interval=args.interval,
        websocket_ping_timeout=args.timeout,
    )
    app.listen(args.port, args.host, backlog=args.backlog)
    ready()
    await asyncio.Event().wait()


asyncio.run(main(parse_args(__doc__)))
