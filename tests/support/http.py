"""Reading HTTP answers: JSON bodies, server-sent events, and a raw SSE client that leaves mid-answer."""
from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

from tornado.httpclient import HTTPResponse

#: The ``fetch`` fixture: ``await fetch(url, method=..., body=..., headers=...)``, never raising for a status.
Fetch = Callable[..., Awaitable[HTTPResponse]]
#: The ``make_app`` fixture: ``make_app(name="T", **application_kwargs) -> Application`` (tests' defaults).
MakeApp = Callable[..., Any]
#: The ``app_url`` fixture: ``app_url(name="T", *, pages=False, **application_kwargs) -> base URL``.
AppUrl = Callable[..., str]


def json_of(response: HTTPResponse) -> Any:
    return json.loads(response.body)


async def sse_until(url: str, body: dict[str, Any], seen: bytes) -> None:
    """POST ``body`` to ``url``'s ``/model/stream`` asking for SSE over a raw socket, read until
    ``seen`` arrives, then leave (close the socket mid-answer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    raw = json.dumps(body).encode()
    writer.write(b"POST /model/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(raw), raw))
    await writer.drain()
    data = b""
    while seen not in data:
        data += await asyncio.wait_for(reader.read(4096), 10)
    writer.close()


def parse_sse(body: bytes) -> list[tuple[str, Any]]:
    """``[(event, data), ...]`` of a server-sent events body (comments skipped)."""
    events = []
    for block in body.decode().split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events
