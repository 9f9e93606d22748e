"""One client connection: HTTP/1.1 requests parsed by httptools (C), handed to Tornado's ``Application``.

A :class:`ServerProtocol` is an asyncio ``Protocol`` on the loop's own transport (uvloop's
when it runs). httptools parses what arrives; each request becomes an :class:`_Incoming`
whose head, body pieces and end are given to the application's delegate (Tornado's routing,
then a ``RequestHandler``) in order, as Tornado's ``HTTP1ServerConnection`` gives them,
waiting whenever the delegate returns a future (a ``stream_request_body`` handler's
``prepare``). Requests are answered one at a time, in order; pipelined ones wait their turn.

What the connection refuses itself, in JSON as every other answer: a request it cannot parse
(400 ``bad_request``, then close), headers over ``max_header_size`` (431), a ``Content-Length``
over ``max_body_size`` (413, after which what the client still sends is read and dropped for a
while, so that it reads the answer instead of a reset).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import socket
from typing import Any, Awaitable, Protocol, cast

import httptools
from tornado import httputil
from tornado.iostream import IOStream, StreamClosedError
from tornado.log import app_log

from ..deadlines import ConnectionDeadlines
from ..tornado_internals import new_headers, preload_stream
from ..wire import JSON_BAD_REQUEST, LINGER_BYTES, LINGER_SECONDS, json_response
from .connection import RequestConnection
from .peer import PeerContext

__all__ = ["ServerProtocol", "PeerContext"]

log = logging.getLogger("monoai_tornado.http")

#: Request bytes buffered ahead of the answer in progress (pipelined requests, a body not yet
#: taken) before the connection stops reading until they are taken.
READ_AHEAD_LIMIT = 1024 * 1024
#: Requests parsed ahead of the one being answered before the connection stops reading (a
#: client pipelining without end holds at most this many, plus what one read brings).
PIPELINE_LIMIT = 16

_HEAD, _BODY, _DONE = 0, 1, 2

#: An HTTP method: a token (RFC 9110).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

HEADERS_TOO_LARGE = json_response(431, "Request Header Fields Too Large", "Request headers are too large",
                                  "bad_request")


def _too_large(limit: int) -> bytes:
    return json_response(413, "Payload Too Large", f"Request body is larger than {limit} bytes", "payload_too_large")


class Serving(Protocol):
    """What a connection needs of its server (:class:`~.server.FastHTTPServer` has it)."""

    delegate: httputil.HTTPServerConnectionDelegate
    max_body_size: int
    max_header_size: int
    deadlines: ConnectionDeadlines
    connections: set[Any]


class _Incoming:
    """One request as parsed: its answer's connection (which holds its head), the body pieces not
    yet given to the delegate, whether it ended."""

    __slots__ = ("connection", "delegate", "chunks", "complete", "stage", "waiting", "refused", "body_size")

    def __init__(self, connection: RequestConnection) -> None:
        self.connection = connection
        self.delegate: httputil.HTTPMessageDelegate | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.complete = False
        self.stage = _HEAD
        self.waiting = False
        self.refused: bytes | None = None  # the answer that refuses it, when it is refused before the handler
        self.body_size = 0


class ServerProtocol(asyncio.Protocol):
    """The HTTP/1.1 server side of one TCP connection (see the module's docstring)."""

    def __init__(self, server: Serving) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        #: None once the connection is lost (the parser holds this protocol: a cycle otherwise).
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.context = PeerContext(None)
        self.queue: collections.deque[_Incoming] = collections.deque()  # the first is being answered
        self.closed = False
        self.detached = False
        self.buffered = 0  # request bytes parsed but not yet given to a delegate
        self.reading_paused = False
        self.upgrade_tail: bytes | None = None  # bytes after an upgrade's head: the new protocol's
        self.lingering = 0  # after a refusal: bytes still dropped before closing (0: not lingering)
        self.head_bytes = 0  # bytes received since the head being parsed began
        self.in_head = True
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._method = ""  # the name of a method llhttp does not know, parsed as a PUT
        self._begun = 0  # requests begun in the bytes being parsed
        self._pending: list[bytes] | None = None  # written in this turn of the loop, sent at its end
        self._written: asyncio.Future[None] = self.loop.create_future()
        self._written.set_result(None)
        self._drained: asyncio.Future[None] | None = None  # while the transport's buffer is full
        self._lost: asyncio.Future[None] = self.loop.create_future()

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.context = PeerContext(transport.get_extra_info("peername"))
        self.server.connections.add(self)
        self.server.deadlines.waiting_for_request(self)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._linger(len(data))
            return
        if self.upgrade_tail is not None:
            self.upgrade_tail += data
            self._pause_reading()
            return
        starts_a_head = self.in_head and self.head_bytes == 0
        if self.in_head:
            self.head_bytes += len(data)
        if not self._feed(data, starts_a_head):
            return
        if self.in_head and self.head_bytes > self.server.max_header_size:
            self._refuse_connection(HEADERS_TOO_LARGE)
        elif self.buffered > READ_AHEAD_LIMIT or len(self.queue) > PIPELINE_LIMIT:
            self._pause_reading()

    def _feed(self, data: bytes, starts_a_head: bool, method: bytes = b"") -> bool:
        """Parse ``data``; False when the connection was refused for it.

        llhttp knows a fixed list of methods, Tornado any token: a request whose method it
        does not know (``BREW``) is parsed as a ``PUT`` and given to the application under its
        own name, which answers it (405) as Tornado's server would.
        """
        self._begun = 0
        if self.parser is None:  # lost
            return False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrade_tail = data[upgrade.args[0]:]
            self._pause_reading()
        except httptools.HttpParserInvalidMethodError as exc:
            name, space, rest = data.partition(b" ")
            if method or not starts_a_head or self._begun > 1 or not space or not _TOKEN.fullmatch(name):
                return self._malformed(exc)
            self.parser = httptools.HttpRequestParser(self)
            self._method = name.decode("latin-1")
            return self._feed(b"PUT " + rest, starts_a_head, name)
        except httptools.HttpParserError as exc:
            return self._malformed(exc)
        return True

    def _malformed(self, exc: Exception) -> bool:
        if not self.lingering and not self.closed:
            log.info("Malformed HTTP request from %s: %s", self.context, exc)
            self._refuse_connection(JSON_BAD_REQUEST)
        return False

    def eof_received(self) -> bool | None:
        return None  # as Tornado: a client that stops sending has gone; the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.parser = None
        self.server.connections.discard(self)
        self.server.deadlines.done(self)
        if not self._lost.done():
            self._lost.set_result(None)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(StreamClosedError())
            self._drained.exception()
        if self.detached or not self.queue:
            return
        active = self.queue[0]
        self.queue.clear()
        if active.delegate is None:
            return
        try:
            if active.stage != _DONE:
                active.delegate.on_connection_close()
            elif active.connection.close_callback is not None:
                callback, active.connection.close_callback = active.connection.close_callback, None
                callback()
        except Exception:
            app_log.error("Uncaught exception on a closed connection", exc_info=True)

    def pause_writing(self) -> None:
        self._drained = self.loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- httptools' callbacks

    def on_message_begin(self) -> None:
        self._begun += 1
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.lingering or self.closed:
            return
        parser = self.parser
        assert parser is not None  # called by the parser itself
        size = len(self._url) + sum(len(n) + len(v) + 4 for n, v in self._headers)
        self.in_head = False
        self.head_bytes = 0
        version = "HTTP/" + parser.get_http_version()
        method, self._method = self._method or parser.get_method().decode("latin-1"), ""
        start_line = httputil.RequestStartLine(method, self._url.decode("latin-1"), version)
        # names and values as llhttp checked them (as Tornado's ``add`` would)
        headers = new_headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in self._headers])
        connection = RequestConnection(self, start_line, headers, _can_keep_alive(start_line, headers),
                                       parser.should_upgrade())
        incoming = _Incoming(connection)
        if size > self.server.max_header_size:
            incoming.refused = HEADERS_TOO_LARGE
        else:
            length = headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > self.server.max_body_size:
                incoming.refused = _too_large(self.server.max_body_size)
        self.queue.append(incoming)
        if len(self.queue) == 1:
            self._start(incoming)

    def on_body(self, body: bytes) -> None:
        if self.lingering or not self.queue:
            return
        incoming = self.queue[-1]
        incoming.body_size += len(body)
        if incoming.refused is not None:
            return
        if incoming.body_size > self.server.max_body_size:  # a chunked body without end
            incoming.refused = _too_large(self.server.max_body_size)
            if incoming is self.queue[0] and incoming.stage != _HEAD:  # its handler has begun
                self._refuse_connection(incoming.refused, linger=True)
            return
        incoming.chunks.append(body)
        self.buffered += len(body)
        if incoming is self.queue[0]:
            self._pump()

    def on_message_complete(self) -> None:
        if self.lingering or not self.queue:
            return
        incoming = self.queue[-1]
        incoming.complete = True
        self.in_head = True
        if incoming is self.queue[0]:
            self.server.deadlines.done(self)
            self._pump()

    # -- giving requests to the application

    def _start(self, incoming: _Incoming) -> None:
        """Begin answering ``incoming``, now first in line."""
        if self.closed:
            return
        if incoming.refused is not None:
            self._refuse_connection(incoming.refused, linger=incoming.refused is not HEADERS_TOO_LARGE)
            return
        if incoming.complete:
            self.server.deadlines.done(self)
        else:
            self.server.deadlines.reading_body(self)
        # The connection is opaque to Tornado; the request keeps it for its life: the peer, not this protocol.
        incoming.delegate = self.server.delegate.start_request(self.context, incoming.connection)
        self._pump()

    def _pump(self) -> None:
        """Give the first request's head, body pieces and end to its delegate, as far as it takes them."""
        if not self.queue or self.closed:
            return
        incoming = self.queue[0]
        delegate = incoming.delegate
        if delegate is None or incoming.waiting:
            return
        connection = incoming.connection
        try:
            while True:
                waited: Awaitable[None] | None = None
                if incoming.stage == _HEAD:
                    incoming.stage = _BODY
                    waited = delegate.headers_received(connection.start_line, connection.request_headers)
                    if connection.detached or self.closed:
                        return
                    if connection.request_headers.get("Expect") == "100-continue":
                        if waited is not None:
                            self._wait(incoming, waited, then_continue=True)
                            return
                        connection.send_continue()
                elif incoming.chunks:
                    chunk = incoming.chunks.popleft()
                    self.buffered -= len(chunk)
                    if not connection.write_finished:
                        waited = delegate.data_received(chunk)
                elif incoming.complete and incoming.stage == _BODY:
                    incoming.stage = _DONE
                    connection.read_finished = True
                    if not connection.write_finished:
                        delegate.finish()
                    self._read_on()
                    return
                else:
                    self._read_on()
                    return
                if waited is not None:
                    self._wait(incoming, waited)
                    return
        except Exception:
            app_log.error("Uncaught exception handling a request from %s", self.context, exc_info=True)
            self.abort()

    def _wait(self, incoming: _Incoming, waited: Awaitable[None], then_continue: bool = False) -> None:
        future = asyncio.ensure_future(waited)
        if future.done() and not then_continue:
            return self._pump() if not future.cancelled() and future.exception() is None else self.abort()
        incoming.waiting = True

        def resume(done: "asyncio.Future[None]") -> None:
            incoming.waiting = False
            if done.cancelled() or done.exception() is not None:
                self.abort()
                return
            if then_continue:
                incoming.connection.send_continue()
            self._pump()

        future.add_done_callback(resume)

    def answer_finished(self, connection: RequestConnection) -> None:
        """``connection``'s answer is written: close, or go on with the next request."""
        if connection.upgrade:  # a WebSocket handshake finishes its 101, then detaches at once
            self.loop.call_soon(self._after_upgrade, connection)
            return
        if connection.disconnect_on_finish:
            self.queue.clear()
            self.close()
            return
        if self.queue and self.queue[0].connection is connection:
            self.queue.popleft()
        if self.queue:
            self.loop.call_soon(self._start, self.queue[0])
        elif not self.closed:
            self.server.deadlines.waiting_for_request(self)
        self._read_on()

    def _after_upgrade(self, connection: RequestConnection) -> None:
        if connection.detached:
            return
        if connection.held:  # refused (no 101): send the refusal and close, the parser being past the head
            self.send(b"".join(connection.held))
        connection.held = None
        self.close()

    # -- writing and closing

    def written(self) -> "asyncio.Future[None]":
        """A future for the bytes written so far: done at once unless the transport's buffer is full."""
        if self.closed:
            failed: asyncio.Future[None] = self.loop.create_future()
            failed.set_exception(StreamClosedError())
            failed.exception()
            return failed
        return self._drained if self._drained is not None else self._written

    def send(self, data: bytes) -> "asyncio.Future[None]":
        """Write ``data``: what is sent in one turn of the loop goes in one ``write`` (a stream's
        head, its events and its end are one system call, not one each)."""
        if not self.closed and self.transport is not None:
            if self._pending is None:
                self._pending = [data]
                self.loop.call_soon(self.flush)
            else:
                self._pending.append(data)
        return self.written()

    def flush(self) -> None:
        """Write what :meth:`send` holds now."""
        pending, self._pending = self._pending, None
        if pending and not self.closed and self.transport is not None:
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        """Close once what was written is sent."""
        if self.transport is not None and not self.closed:
            self.flush()
            self.transport.close()

    def abort(self) -> None:
        """Close now, dropping what is not sent."""
        if self.transport is not None and not self.closed:
            self.transport.abort()

    async def wait_closed(self) -> None:
        await self._lost

    def detach(self, answer: bytes) -> IOStream:
        """Hand the socket to a Tornado ``IOStream`` (a WebSocket's) with ``answer`` written on it."""
        assert self.transport is not None
        self.flush()  # earlier answers first
        sock = self.transport.get_extra_info("socket")
        duplicate = socket.socket(fileno=os.dup(sock.fileno()))
        self.detached = True
        self.server.deadlines.done(self)
        self.transport.close()  # closes our descriptor only: the duplicate keeps the connection
        stream = IOStream(duplicate)
        if self.upgrade_tail:
            preload_stream(stream, self.upgrade_tail)
        self.upgrade_tail = None
        if answer:
            stream.write(answer).add_done_callback(_seen)
        return stream

    def _refuse_connection(self, answer: bytes, linger: bool = False) -> None:
        """Send ``answer`` (a complete answer that closes) and close; with ``linger``, first drop
        what the client still sends (bounded in bytes and time), so that it reads the answer, not a reset."""
        if self.closed or self.transport is None:
            return
        self.queue.clear()
        self.buffered = 0
        self.server.deadlines.done(self)
        self.flush()
        self.transport.write(answer)
        if not linger:
            self.close()
            return
        self.lingering = LINGER_BYTES
        self._resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.close)

    def _linger(self, size: int) -> None:
        self.lingering -= size
        if self.lingering <= 0:
            self.lingering = 1
            self.close()

    def _read_on(self) -> None:
        """Read again once what was buffered ahead has mostly been taken (not past an upgrade's head)."""
        if (self.reading_paused and self.upgrade_tail is None and self.buffered <= READ_AHEAD_LIMIT // 2
                and len(self.queue) <= PIPELINE_LIMIT // 2):
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()


def _can_keep_alive(start_line: httputil.RequestStartLine, headers: httputil.HTTPHeaders) -> bool:
    """Tornado's rule (``HTTP1Connection._can_keep_alive``)."""
    connection = headers.get("Connection")
    connection = connection.lower() if connection is not None else None
    if start_line.version == "HTTP/1.1":
        return connection != "close"
    if ("Content-Length" in headers or "Transfer-Encoding" in headers
            or start_line.method in ("HEAD", "GET")):
        return connection == "keep-alive"
    return False


def _seen(future: "asyncio.Future[None]") -> None:
    if not future.cancelled():
        future.exception()
