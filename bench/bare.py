"""What the bare floor servers share: serve a Tornado app until SIGTERM or SIGINT (no other import)."""
from __future__ import annotations

import asyncio
import signal

import tornado.httpserver
import tornado.web


async def serve_until_stopped(app: tornado.web.Application, host: str, port: int) -> None:
    server = tornado.httpserver.HTTPServer(app)
    server.listen(port, host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
