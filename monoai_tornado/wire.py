"""Answers given below the handlers, on the connection itself, as JSON like every other answer.

Tornado answers a request it cannot parse (bad request line, headers, chunk sizes,
Content-Length) with a bare ``400 Bad Request`` and no body, and a ``Content-Length`` over
the server's body cap the same way while the client is still sending, which the client sees
as a reset. Here:

- :class:`JsonErrorStream` turns that bare 400 into ``{"error", "code": "bad_request"}``;
- :func:`refuse_oversized` answers 413 ``payload_too_large`` before the body is read, then
  reads and drops what the client still sends (bounded in bytes and time) before closing, so
  the client reads the answer instead of a reset.
"""
from __future__ import annotations

import asyncio
import json
import logging

from tornado import httputil
from tornado.iostream import IOStream, StreamClosedError

from .tornado_internals import BARE_BAD_REQUEST, retype_stream

log = logging.getLogger("monoai_tornado.http")

#: Seconds and bytes a refused upload may still send before the connection is closed.
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024 * 1024


def json_response(status: int, reason: str, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 answer with a JSON error body that closes the connection."""
    body = json.dumps({"error": message, "code": code}, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=UTF-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


JSON_BAD_REQUEST = json_response(400, "Bad Request", "Malformed HTTP request", "bad_request")


class JsonErrorStream(IOStream):
    """An ``IOStream`` that sends Tornado's bare connection-level 400 as a JSON answer, with
    Nagle's algorithm off for good (set once by :func:`json_errors`, as aiohttp and uvicorn do):
    Tornado turns it on and off around every answer, two ``setsockopt`` calls per request."""

    def set_nodelay(self, value: bool) -> None:
        pass

    def write(self, data: bytes | memoryview) -> "asyncio.Future[None]":
        if len(data) == len(BARE_BAD_REQUEST) and data == BARE_BAD_REQUEST:
            data = JSON_BAD_REQUEST
        return super().write(data)


def json_errors(stream: IOStream) -> None:
    """Make ``stream`` (a plain TCP one) answer connection-level 400s in JSON, Nagle's algorithm off."""
    IOStream.set_nodelay(stream, True)
    retype_stream(stream, JsonErrorStream)


def declared_length(headers: httputil.HTTPHeaders) -> int | None:
    """The request's ``Content-Length`` when it is one plain number, else None."""
    value = headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


_lingering: set["asyncio.Task[None]"] = set()


def refuse_oversized(connection: httputil.HTTPConnection, limit: int) -> None:
    """Answer 413 on ``connection`` (an ``HTTP1Connection`` whose body is not read yet) and close."""
    stream = connection.detach()  # type: ignore[attr-defined]
    message = f"Request body is larger than {limit} bytes"
    task = asyncio.ensure_future(_answer_and_linger(stream, json_response(
        413, "Payload Too Large", message, "payload_too_large")))
    _lingering.add(task)
    task.add_done_callback(_lingering.discard)


async def _answer_and_linger(stream: IOStream, answer: bytes) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_SECONDS
    dropped = 0
    try:
        await stream.write(answer)
        while dropped < LINGER_BYTES and loop.time() < deadline:
            chunk = await asyncio.wait_for(stream.read_bytes(65536, partial=True), deadline - loop.time())
            dropped += len(chunk)
    except (StreamClosedError, asyncio.TimeoutError):
        pass
    finally:
        stream.close()
