"""One kept-alive HTTP/1.1 connection to an upstream, as a plain asyncio ``Protocol``.

The answer is parsed where its bytes arrive (``data_received``): the status line and headers,
then the body (chunked, ``Content-Length`` or to the close), whose payload goes to the
exchange's ``deliver`` as it comes. An exchange costs one future (its end), not one per read as
on an ``IOStream``. ``deliver`` may return an awaitable: the socket is not read again until it
is done (a slow consumer holds the upstream back). Errors are those of the ``IOStream`` client
this replaces: :class:`StreamClosedError` (its ``real_error`` the socket's, if any) for a
connection that closed before the answer's end, :class:`HTTPInputError` for a malformed answer.
"""
from __future__ import annotations

import asyncio
import re
import socket
from typing import Awaitable, Callable, cast

from tornado.httputil import HTTPHeaders, HTTPInputError, ResponseStartLine, parse_response_start_line
from tornado.iostream import StreamClosedError

from .http1 import NO_BODY, ChunkedBody, new_dechunker, parse_headers

#: The blank line that ends an answer's head: where Tornado's ``\r?\n\r?\n`` match ends (a
#: match of this one ends there too), found 5x faster (the search starts from a literal LF).
HEAD_END = re.compile(rb"\n\r?\n")

Deliver = Callable[[bytes], "Awaitable[None] | None"]
HeadCallback = Callable[[ResponseStartLine, HTTPHeaders], None]


class Exchange:
    """What one request waits for: its answer's head, then its body, then :attr:`done` (reusable?)."""

    def __init__(self, method: str, on_head: HeadCallback, deliver: Deliver, on_end: Callable[[bool], None],
                 max_head: int) -> None:
        self.method = method
        self.on_head = on_head
        self.deliver = deliver
        self.on_end = on_end
        self.max_head = max_head
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.head_seen = False
        # body framing, once the head is read: "none" | "chunked" | "length" | "close"
        self.mode = ""
        self.remaining = 0
        self.reusable = True

    def finish(self, reusable: bool) -> None:
        """The answer was read to its end: ``on_end`` (at once: the connection is pooled or closed), then :attr:`done`."""
        self.on_end(reusable)
        self.done.set_result(reusable)


class UpstreamConnection(asyncio.Protocol):
    """A connection carrying one exchange at a time; :attr:`closed` once it may not be used again."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.exchange: Exchange | None = None
        self._head = bytearray()
        self._paused = False
        #: The chunked answer's reader (one exchange at a time), restarted for the next one.
        self._dechunker: ChunkedBody | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small requests go at once

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None or exchange.done.done():
            self.close()  # bytes nobody asked for: the connection is not reused
            return
        try:
            self._feed(exchange, data)
        except Exception as exc:  # a malformed answer (HTTPInputError), or the consumer's own error
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange = self.exchange
        if exchange is not None and not exchange.done.done():
            if exchange.mode == "close" and exc is None:
                exchange.finish(False)  # a body read to the close, complete
            else:
                exchange.done.set_exception(StreamClosedError(real_error=exc))

    # -- use

    def send(self, exchange: Exchange, data: bytes) -> None:
        """Write a request (head and body in one piece); its answer goes to ``exchange``."""
        assert self.transport is not None
        self.exchange = exchange
        self._head.clear()
        if self.closed:
            exchange.done.set_exception(StreamClosedError())
            return
        self.transport.write(data)

    def release(self) -> None:
        """The exchange is over and the connection idle (it is read: a close is noticed)."""
        self.exchange = None
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- parsing

    def _feed(self, exchange: Exchange, data: bytes) -> None:
        if not exchange.head_seen:
            head = self._head
            head += data
            while True:
                match = HEAD_END.search(head)
                if match is None:
                    if len(head) > exchange.max_head:
                        raise HTTPInputError("answer head too long")
                    return
                if match.end() > exchange.max_head:
                    raise HTTPInputError("answer head too long")
                text = bytes(head[:match.end()]).decode("latin1").lstrip("\r\n")
                del head[:match.end()]
                first, _, rest = text.partition("\n")
                start_line = parse_response_start_line(first.rstrip("\r"))
                headers = parse_headers(rest)
                if not 100 <= start_line.code < 200 or start_line.code == 101:
                    break  # interim 1xx answers are skipped
            exchange.head_seen = True
            data = bytes(head)
            head.clear()
            exchange.on_head(start_line, headers)
            self._frame(exchange, start_line, headers)
            if exchange.mode == "none":
                exchange.finish(exchange.reusable and not data)  # bytes after a bodiless answer: not reused
                return
        self._body(exchange, data)

    def _frame(self, exchange: Exchange, start_line: ResponseStartLine, headers: HTTPHeaders) -> None:
        """Set the body's framing (``none`` when the answer has no body)."""
        if exchange.method == "HEAD" or start_line.code in NO_BODY:
            exchange.mode = "none"
            return
        length = headers.get("Content-Length")
        if headers.get("Transfer-Encoding", "").lower() == "chunked":
            if self._dechunker is None or not self._dechunker.restart():
                self._dechunker = new_dechunker()
            exchange.mode = "chunked"
            exchange.reusable = length is None
        elif length is not None:
            try:
                size = int(length)
            except ValueError:
                raise HTTPInputError(f"invalid Content-Length {length!r}") from None
            if size < 0:
                raise HTTPInputError(f"invalid Content-Length {length!r}")
            exchange.mode, exchange.remaining = ("length", size) if size else ("none", 0)
        else:
            exchange.mode, exchange.reusable = "close", False

    def _body(self, exchange: Exchange, data: bytes) -> None:
        if not data:
            return
        finished = False
        if exchange.mode == "chunked":
            dechunker = self._dechunker
            assert dechunker is not None
            payload = dechunker.feed(data)
            if dechunker.done:
                finished = True
                exchange.reusable = exchange.reusable and not dechunker.extra
        elif exchange.mode == "length":
            payload = data[:exchange.remaining] if len(data) > exchange.remaining else data
            exchange.remaining -= len(payload)
            if exchange.remaining == 0:
                finished = True
                exchange.reusable = len(payload) == len(data)  # bytes past the end: not reused
        else:
            payload = data
        waiting = exchange.deliver(payload) if payload else None
        if waiting is not None:
            self._wait(exchange, waiting, finished)
        elif finished:
            exchange.finish(exchange.reusable)

    def _wait(self, exchange: Exchange, waiting: Awaitable[None], finished: bool) -> None:
        """Read no more until the consumer is done with what it has (and end the exchange then)."""
        transport = self.transport
        assert transport is not None
        if not finished and not self._paused:
            self._paused = True
            transport.pause_reading()

        def resume(_: object) -> None:
            if exchange.done.done():
                return
            if finished:
                exchange.finish(exchange.reusable)
            elif self._paused and not self.closed:
                self._paused = False
                transport.resume_reading()

        asyncio.ensure_future(waiting).add_done_callback(resume)

    def _fail(self, exc: BaseException) -> None:
        exchange = self.exchange
        if exchange is not None and not exchange.done.done():
            exchange.done.set_exception(exc)
        self.close()
