"""The gateway floor: a bare Tornado proxy that forwards a request upstream and relays the answer.

    python bench/floor_proxy.py --port 8001 --upstream http://127.0.0.1:9000

``POST /v1/chat/completions`` (any ``POST`` path) is sent to the same path on ``--upstream``
with Tornado's HTTP client; the status, ``Content-Type`` and each body chunk are relayed as
they arrive (a flush per chunk, so a stream stays a stream). No limits, no usage, no parsing,
no headers of its own: what a gateway costs beyond this is the price of its features.

Tornado's simple client opens a connection per request (it sends ``Connection: close``).
``--keep-alive`` forwards over kept-alive upstream connections instead (the same pool
monoai_tornado's OpenAI backend uses), to measure what reusing connections gives the floor.
"""
from __future__ import annotations

import argparse
import asyncio
from typing import Any

import tornado.httpclient
import tornado.web

from bare import serve_until_stopped


class ProxyHandler(tornado.web.RequestHandler):
    def initialize(self, upstream: str, client: Any, pool: Any) -> None:
        self.upstream = upstream
        self.client = client
        self.pool = pool

    async def post(self) -> None:
        request = tornado.httpclient.HTTPRequest(
            self.upstream + self.request.path, method="POST", body=self.request.body,
            headers={"Content-Type": self.request.headers.get("Content-Type", "application/json")},
            streaming_callback=self._on_chunk, connect_timeout=30, request_timeout=60)
        try:
            if self.pool is not None:
                await self.pool.fetch(request, self._on_start).future
            else:
                request.header_callback = self._on_header
                await self.client.fetch(request, raise_error=False)
        except Exception as exc:  # the upstream is gone: nothing to relay
            if not self._headers_written:
                self.set_status(502)
                self.finish({"error": str(exc)})
                return
        self.finish()

    def _on_header(self, line: str) -> None:
        if line.startswith("HTTP/"):
            self.set_status(int(line.split(None, 2)[1]))
        elif line[:13].lower() == "content-type:":
            self.set_header("Content-Type", line[13:].strip())

    def _on_start(self, start_line: Any, headers: Any) -> None:
        self.set_status(start_line.code)
        if "Content-Type" in headers:
            self.set_header("Content-Type", headers["Content-Type"])

    def _on_chunk(self, chunk: bytes) -> None:
        self.write(chunk)
        self.flush()


def make_pool(keep_alive: bool) -> Any:
    """The kept-alive connection pool of monoai_tornado (plumbing only), or None."""
    if not keep_alive:
        return None
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from monoai_tornado.backends.upstream import UpstreamPool

    return UpstreamPool()


async def main() -> None:
    parser = argparse.ArgumentParser(description="bare Tornado proxy (the gateway floor)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000")
    parser.add_argument("--keep-alive", action="store_true", help="reuse upstream connections")
    args = parser.parse_args()
    client = tornado.httpclient.AsyncHTTPClient(max_clients=10_000)
    app = tornado.web.Application([(r"/.*", ProxyHandler, {"upstream": args.upstream.rstrip("/"), "client": client,
                                                           "pool": make_pool(args.keep_alive)})])
    await serve_until_stopped(app, args.host, args.port)


if __name__ == "__main__":
    asyncio.run(main())
