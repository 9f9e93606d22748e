"""A server running in its own thread and IOLoop, for synchronous clients (hypothesis, sockets)."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

import tornado.testing


class ThreadedServer:
    """``with ThreadedServer(app) as server: server.port``: serves until the block ends."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        sock, self.port = tornado.testing.bind_unused_port()
        server = self.app.http_server()
        server.add_sockets([sock])
        self._ready.set()
        await self._stop.wait()
        server.stop()
        await server.close_all_connections()

    def __enter__(self) -> "ThreadedServer":
        self._thread.start()
        assert self._ready.wait(10), "server thread did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
