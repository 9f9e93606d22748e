"""``FastHTTPServer``: Tornado's ``HTTPServer`` interface over :class:`~.protocol.ServerProtocol` connections."""
from __future__ import annotations

import asyncio
import logging
import socket


import tornado.netutil
from tornado import httputil

from ..deadlines import DEFAULT_IDLE_TIMEOUT, ConnectionDeadlines
from .protocol import ServerProtocol

__all__ = ["FastHTTPServer"]

log = logging.getLogger("monoai_tornado.http")

#: Tornado's default cap on a request's head.
MAX_HEADER_SIZE = 64 * 1024


class FastHTTPServer:
    """Serves ``delegate`` (a Tornado ``Application``) on asyncio transports, parsing with httptools.

    It has what the server of :meth:`Application.http_server` is used for: ``listen``,
    ``add_sockets``, ``stop`` and ``close_all_connections``, with Tornado's meaning. Headers,
    idle keep-alive connections and bodies are timed by one :class:`ConnectionDeadlines` sweep.
    """

    def __init__(self, delegate: httputil.HTTPServerConnectionDelegate, *, max_body_size: int,
                 idle_connection_timeout: float | None = None, body_timeout: float | None = None,
                 max_header_size: int = MAX_HEADER_SIZE) -> None:
        self.delegate = delegate
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
        self.deadlines = ConnectionDeadlines(idle_connection_timeout or DEFAULT_IDLE_TIMEOUT, body_timeout,
                                             close=ServerProtocol.abort)
        self.connections: set[ServerProtocol] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._starting: set[asyncio.Task[None]] = set()
        self._stopped = False

    def listen(self, port: int, address: str | None = None) -> None:
        self.add_sockets(tornado.netutil.bind_sockets(port, address))

    def add_sockets(self, sockets: list[socket.socket]) -> None:
        """Serve on listening sockets (accepting starts on the loop's next turn; the kernel queues
        connections meanwhile)."""
        self._stopped = False
        for sock in sockets:
            task = asyncio.ensure_future(self._serve(sock))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)
        self.deadlines.start()

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: ServerProtocol(self), sock=sock, backlog=128)
        if self._stopped:
            server.close()
        else:
            self._servers.append(server)

    def stop(self) -> None:
        """Stop accepting connections (those open stay)."""
        self._stopped = True
        for server in self._servers:
            server.close()
        self._servers.clear()
        self.deadlines.stop()

    async def close_all_connections(self) -> None:
        """Close every open connection and wait until each is closed."""
        while self.connections:
            connection = next(iter(self.connections))
            connection.close()
            await connection.wait_closed()


