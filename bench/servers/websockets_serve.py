"""The websockets library's asyncio server: serve(..., ping_interval, ping_timeout)."""

import asyncio

from _common import parse_args, ready, skip, ssl_context

try:
    from websockets.asyncio.server import serve
except ImportError as e:
    skip(f"websockets not installed ({e})")


async def handler(connection) -> None:
    await connection.wait_closed()


async def main(args) -> None:
    async with serve(
        handler,
        args.host,
        args.port,
        ping_interval=args.interval,
        ping_timeout=args.timeout,
        compression=None,
        backlog=args.backlog,
        ssl=ssl_context(args),
    ) as server:
        ready()
        await server.serve_forever()


asyncio.run(main(parse_args(__doc__)))
