"""The aiohttp floor: the relay a Python engineer writes in an afternoon (issue 34).

    python bench/floor_aiohttp.py --port 8002 --upstream http://127.0.0.1:9000

An aiohttp server on uvloop, one pooled ``ClientSession`` (kept-alive upstream connections),
relaying bytes: any ``POST`` goes to the same path upstream with its body and
``Content-Type``; the status, ``Content-Type`` and each piece of the answer are written back as
they arrive. No limits, no usage, no parsing. Needs ``pip install -e '.[bench]'``.
"""
from __future__ import annotations

import argparse
import asyncio

import aiohttp
from aiohttp import web


async def relay(request: web.Request) -> web.StreamResponse:
    session: aiohttp.ClientSession = request.app["session"]
    body = await request.read()
    headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
    try:
        return await _relay(request, session, body, headers)
    except ConnectionResetError:  # the client left (wrk closing its connections at the end of a load)
        return web.Response(status=499)


async def _relay(request: web.Request, session: aiohttp.ClientSession, body: bytes,
                 headers: dict[str, str]) -> web.StreamResponse:
    async with session.post(request.app["upstream"] + request.path, data=body, headers=headers) as upstream:
        out = web.StreamResponse(status=upstream.status)
        out.content_type = upstream.content_type
        if upstream.content_length is not None:  # a whole answer: one write, Content-Length kept
            data = await upstream.read()
            out.content_length = len(data)
            await out.prepare(request)
            await out.write(data)
        else:
            await out.prepare(request)
            async for piece in upstream.content.iter_any():
                await out.write(piece)
        await out.write_eof()
        return out


async def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app["upstream"] = upstream.rstrip("/")
    app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))

    async def close(app: web.Application) -> None:
        await app["session"].close()

    app.on_cleanup.append(close)
    app.router.add_post("/{tail:.*}", relay)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="aiohttp relay (the gateway floor of issue 34)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000")
    args = parser.parse_args()
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(make_app(args.upstream), host=args.host, port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
