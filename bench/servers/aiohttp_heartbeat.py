"""aiohttp's WebSocketResponse(heartbeat=interval)."""

import asyncio

from _common import parse_args, ready, skip

try:
    from aiohttp import WSMsgType, web
except ImportError as e:
    skip(f"aiohttp not installed ({e})")


async def main(args) -> None:
    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=args.interval, compress=False)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.ERROR:
                break
        return ws

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, backlog=args.backlog).start()
    ready()
    await asyncio.Event().wait()


asyncio.run(main(parse_args(__doc__)))
