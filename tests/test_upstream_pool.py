"""Kept-alive upstream connections (monoai_tornado/backends/upstream.py) against a real socket server.

The server here counts the TCP connections it accepts, so the tests see what a model server
sees: one connection for calls in sequence, one per call in flight, a fresh one when the
upstream closed the kept one or said ``Connection: close``.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from monoai_tornado.backends.base import ReportedUsage, TextDelta
from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.backends.upstream import shared_pool
from tests.support.events import pieces

MESSAGES = [{"role": "user", "content": "hi"}]
EVENTS = (b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
          b'data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}\n\n'
          b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
          b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n')


class CountingUpstream:
    """A raw HTTP/1.1 server answering every POST with the same event stream; counts connections.

    ``close_after_answer``: close the socket right after each answer without saying so (as a
    server whose keep-alive timeout expired); ``say_close``: answer ``Connection: close``.
    """

    def __init__(self, *, close_after_answer: bool = False, say_close: bool = False) -> None:
        self.close_after_answer = close_after_answer
        self.say_close = say_close
        self.connections = 0
        self.requests = 0
        self.server: asyncio.base_events.Server | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def __aenter__(self) -> "CountingUpstream":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for _ in range(100):  # bounded: at most 100 requests per connection
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                              if line.startswith(b"content-length:"))
                await reader.readexactly(length)
                self.requests += 1
                close = b"Connection: close\r\n" if self.say_close else b""
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n%s\r\n%s"
                             % (len(EVENTS), close, EVENTS))
                await writer.drain()
                if self.close_after_answer or self.say_close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


async def answer(backend: OpenAIBackend) -> list[Any]:
    async with contextlib.aclosing(backend.stream(MESSAGES)) as stream:
        return pieces([event async for event in stream])


EXPECTED = [TextDelta("Hel"), TextDelta("lo"), ReportedUsage(3, 2)]


async def test_calls_in_sequence_share_one_connection() -> None:
    async with CountingUpstream() as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        for _ in range(5):
            assert await answer(backend) == EXPECTED
        assert shared_pool().idle_connections(upstream.base_url) == 1
    assert upstream.requests == 5 and upstream.connections == 1


async def test_calls_in_flight_each_have_a_connection_and_leave_it_for_the_next() -> None:
    async with CountingUpstream() as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        results = await asyncio.gather(*(answer(backend) for _ in range(3)))
        assert results == [EXPECTED] * 3 and upstream.connections == 3
        for _ in range(3):
            assert await answer(backend) == EXPECTED
    assert upstream.requests == 6 and upstream.connections == 3


async def test_a_kept_connection_the_upstream_closed_is_not_used_again() -> None:
    async with CountingUpstream(close_after_answer=True) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        for _ in range(3):
            assert await answer(backend) == EXPECTED
            await asyncio.sleep(0.05)  # the upstream's close has arrived
    assert upstream.requests == 3 and upstream.connections == 3


async def test_a_closed_kept_connection_taken_before_its_close_is_noticed_is_retried_once() -> None:
    async with CountingUpstream(close_after_answer=True) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        for _ in range(3):  # no pause: the next call may take the connection before its FIN is seen
            assert await answer(backend) == EXPECTED
    assert upstream.requests == 3


async def test_connection_close_from_the_upstream_is_honoured() -> None:
    async with CountingUpstream(say_close=True) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        for _ in range(2):
            assert await answer(backend) == EXPECTED
        assert shared_pool().idle_connections(upstream.base_url) == 0
    assert upstream.connections == 2
