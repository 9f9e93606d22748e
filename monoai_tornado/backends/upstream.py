"""Kept-alive HTTP/1.1 connections to upstream servers, reused from one request to the next.

Tornado's simple HTTP client opens a connection per request: a resolver call in a thread, a
TCP handshake and ``Connection: close`` each time. In front of a fast model server that is
most of what a proxied request costs. :class:`UpstreamPool` sends each request (the exchange
itself is :mod:`.upstream_conn`'s, a plain asyncio ``Protocol``) over a connection left open by an earlier request to the same
scheme, host and port when there is one, and keeps the connection for the next request once
the answer has been read to its end.

A connection goes back to the pool only after a complete answer whose length was known
(``Content-Length`` or chunked) and that did not say ``Connection: close``. A call that is
aborted closes its own connection, so the upstream sees the client leave (and stops
generating). A kept connection that the upstream closed meanwhile is noticed before it is
used (the event loop reads idle connections too), and a request that fails on a reused connection before any byte
of its answer came back is sent once more on a new connection.
"""
from __future__ import annotations

import asyncio
import io
import socket
import ssl
import urllib.parse
import weakref
from typing import Awaitable, Callable

from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders, ResponseStartLine
from tornado.iostream import StreamClosedError
from tornado.netutil import is_valid_ip
from tornado.simple_httpclient import HTTPTimeoutError

from ..tornado_internals import new_headers
from .http1 import request_head
from .upstream_conn import Exchange, UpstreamConnection

#: Seconds a connection may wait in the pool before it is closed rather than reused.
IDLE_TIMEOUT = 15.0
#: Connections kept per (scheme, host, port).
MAX_IDLE = 512
#: Largest answer header; bodies are streamed and not limited here.
MAX_HEADER_SIZE = 64 * 1024

Target = tuple[str, str, int]
HeadersCallback = Callable[[ResponseStartLine, HTTPHeaders], None]


class _Answer:
    """What came back for one request: its start line and headers, and its body unless streamed."""

    def __init__(self, request: HTTPRequest, on_headers: HeadersCallback | None) -> None:
        self.request = request
        self.on_headers = on_headers
        self.start_line: ResponseStartLine | None = None
        self.headers = new_headers(())  # (replaced by the answer's)
        self.keep_alive = False
        self.body: list[bytes] = []

    def headers_received(self, start_line: ResponseStartLine, headers: HTTPHeaders) -> None:
        self.start_line, self.headers = start_line, headers
        # Whether the body's framing let it end where it said is the connection's answer; this is the rest.
        self.keep_alive = start_line.version == "HTTP/1.1" and headers.get("Connection", "").lower() != "close"
        if self.on_headers is not None:
            self.on_headers(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        callback = self.request.streaming_callback
        if callback is not None:
            return callback(chunk)
        self.body.append(chunk)
        return None


class UpstreamCall:
    """One request sent through the pool; :attr:`future` resolves to its response.

    The response's body is empty when the request has a ``streaming_callback`` (the chunks
    went there). :meth:`abort` closes the call's connection at once, or stops it being made.
    """

    def __init__(self, pool: "UpstreamPool", request: HTTPRequest, on_headers: HeadersCallback | None) -> None:
        self.pool = pool
        self.request = request
        self.answer = _Answer(request, on_headers)
        self.connection: UpstreamConnection | None = None
        self.aborted = False
        #: The answer was read to its end (its connection pooled or closed); the future follows.
        self.answered = False
        self._connecting: asyncio.Future[UpstreamConnection] | None = None
        loop = asyncio.get_running_loop()
        self._start = loop.time()
        #: ``(target, path, Host header)`` of the request's URL.
        self._where = pool.target(request.url)
        connection = pool.take(self._where[0])
        self.future: asyncio.Future[HTTPResponse]
        if connection is None:
            self.future = asyncio.ensure_future(self._run())
        else:  # sent now, on a kept connection: no task (the usual case under load)
            self.future = loop.create_future()
            self.future.add_done_callback(self._abort_if_cancelled)
            self._send(connection).done.add_done_callback(self._sent)

    def abort(self) -> None:
        """Close the connection now (the upstream sees it close); the call ends in an error."""
        self.aborted = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self.connection is not None:
            self.connection._fail(StreamClosedError())

    async def _run(self) -> HTTPResponse:
        """Connect, then exchange (a task: the call made when no kept connection was there, or
        again when the kept one had been closed by the upstream before our request reached it)."""
        connection = await self._connect(self._where[0])
        exchange = self._send(connection)
        try:
            await exchange.done
        except BaseException:  # cancelled: the connection is closed, the upstream sees it
            self._drop(connection)
            raise
        return self._response()

    def _sent(self, done: "asyncio.Future[bool]") -> None:
        """The end of an exchange sent on a kept connection without a task: the response, or
        the call again on a new connection when the kept one was closed before any answer, or the error."""
        future = self.future
        if future.done():  # (cancelled by its caller)
            if not done.cancelled():
                done.exception()
            return
        exc = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if exc is None:
            future.set_result(self._response())
        elif isinstance(exc, StreamClosedError) and not self.aborted and self.answer.start_line is None:
            retry = asyncio.ensure_future(self._run())
            retry.add_done_callback(lambda ended: _copy_outcome(ended, future))
        else:
            future.set_exception(exc)

    async def _connect(self, target: Target) -> UpstreamConnection:
        if self.aborted:
            raise StreamClosedError()
        self._connecting = asyncio.ensure_future(self.pool.connect(target, self.request.connect_timeout or None))
        try:
            connection = await self._connecting
        except asyncio.CancelledError:
            if self.aborted:  # our abort(), not a cancellation of the caller's task
                raise StreamClosedError() from None
            raise
        if self.aborted:
            connection.close()
            raise StreamClosedError()
        return connection

    def _ended(self, connection: UpstreamConnection, target: Target, reusable: bool) -> None:
        """The answer's last byte is read: keep the connection for the next call, or close it (now,
        before the consumer sees the end, so that an abort after it finds nothing to close)."""
        self.answered = True
        if reusable and self.answer.keep_alive and not self.aborted and not connection.closed:
            connection.release()
            self.pool.give_back(target, connection)
        else:
            connection.close()
        self.connection = None

    def _send(self, connection: UpstreamConnection) -> Exchange:
        """Send the request on ``connection``; its answer ends the returned exchange."""
        target, path, host = self._where
        self.connection = connection
        exchange = Exchange(self.request.method, self.answer.headers_received, self.answer.data_received,
                            lambda reusable: self._ended(connection, target, reusable), MAX_HEADER_SIZE)
        exchange.done.add_done_callback(lambda done: self._drop_if_failed(done, connection))
        if self.aborted:
            exchange.done.set_exception(StreamClosedError())
            return exchange
        request = self.request
        body = request.body or b""
        try:
            head = request_head(request.method, path, request.headers, host, len(body))
        except ValueError as exc:
            exchange.done.set_exception(exc)
            return exchange
        connection.send(exchange, head + body)
        return exchange

    def _drop_if_failed(self, done: "asyncio.Future[bool]", connection: UpstreamConnection) -> None:
        """An exchange that failed closes its connection (unless it went back to the pool meanwhile)."""
        if done.cancelled() or done.exception() is not None:
            self._drop(connection)

    def _drop(self, connection: UpstreamConnection) -> None:
        if self.connection is connection:
            connection.close()
            self.connection = None

    def _abort_if_cancelled(self, future: "asyncio.Future[HTTPResponse]") -> None:
        if future.cancelled():
            self.abort()

    def _response(self) -> HTTPResponse:
        request, answer = self.request, self.answer
        start_line = answer.start_line
        assert start_line is not None
        buffer = None if request.streaming_callback is not None else io.BytesIO(b"".join(answer.body))
        return HTTPResponse(request, start_line.code, reason=start_line.reason, headers=answer.headers,
                            effective_url=request.url, buffer=buffer, start_time=self._start)


def _copy_outcome(source: "asyncio.Future[HTTPResponse]", target: "asyncio.Future[HTTPResponse]") -> None:
    if target.done():
        if not source.cancelled():
            source.exception()
    elif source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


class UpstreamPool:
    """Keeps connections to upstream servers open between requests; one per event loop."""

    def __init__(self, *, idle_timeout: float = IDLE_TIMEOUT, max_idle: int = MAX_IDLE,
                 max_buffer_size: int = 100 * 1024 * 1024) -> None:
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self.max_buffer_size = max_buffer_size  # kept for callers; a slow consumer pauses reading instead
        self._idle: dict[Target, list[tuple[UpstreamConnection, float]]] = {}
        self._targets: dict[str, tuple[Target, str, str]] = {}
        self._ssl: ssl.SSLContext | None = None

    def fetch(self, request: HTTPRequest, on_headers: HeadersCallback | None = None) -> UpstreamCall:
        """Send ``request`` (its method, headers, body and ``streaming_callback`` are used)."""
        return UpstreamCall(self, request, on_headers)

    async def connect(self, target: Target, timeout: float | None) -> UpstreamConnection:
        """A new connection to ``target``, TLS for https.

        Errors as Tornado's ``TCPClient`` gave them: a DNS failure's ``socket.gaierror`` as it is,
        the socket's or TLS's error as a :class:`StreamClosedError`'s ``real_error`` (the last
        address tried), :class:`HTTPTimeoutError` past ``timeout``.
        """
        scheme, host, port = target
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                if is_valid_ip(host):
                    addresses = [(host, port)]
                else:
                    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                    addresses = [(str(info[4][0]), int(info[4][1])) for info in infos]
                error: OSError | None = None
                for address, address_port in addresses:
                    try:
                        _, connection = await loop.create_connection(
                            UpstreamConnection, address, address_port,
                            ssl=self.ssl_context() if scheme == "https" else None,
                            server_hostname=host if scheme == "https" else None)
                    except socket.gaierror:
                        raise
                    except OSError as exc:
                        error = exc
                        continue
                    return connection
        except TimeoutError:
            raise HTTPTimeoutError("Timeout while connecting") from None
        raise StreamClosedError(real_error=error)

    def target(self, url: str) -> tuple[Target, str, str]:
        """``((scheme, host, port), path with query, Host header)`` of ``url`` (cached)."""
        known = self._targets.get(url)
        if known is None:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"unsupported URL: {parts.scheme}://{parts.hostname}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
            known = ((parts.scheme, parts.hostname, port), path, parts.netloc.rpartition("@")[2])
            if len(self._targets) < 1024:
                self._targets[url] = known
        return known

    def take(self, target: Target) -> UpstreamConnection | None:
        """A kept connection to ``target`` that is still open, or None.

        An idle connection is read by the event loop, so a close (or bytes nobody asked for)
        marks it closed; one closed too recently to be seen is retried once by the call.
        """
        idle = self._idle.get(target)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            connection, since = idle.pop()
            if now - since < self.idle_timeout and not connection.closed:
                return connection
            connection.close()
        return None

    def give_back(self, target: Target, connection: UpstreamConnection) -> None:
        """Keep ``connection`` for the next request to ``target``."""
        idle = self._idle.setdefault(target, [])
        now = asyncio.get_running_loop().time()
        while idle and (len(idle) >= self.max_idle or now - idle[0][1] >= self.idle_timeout):
            idle.pop(0)[0].close()  # the oldest first
        idle.append((connection, now))

    def idle_connections(self, url: str | None = None) -> int:
        """Connections kept open, to the server of ``url`` or to any."""
        if url is not None:
            return len(self._idle.get(self.target(url)[0], ()))
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> None:
        """Close every kept connection."""
        for idle in self._idle.values():
            for connection, _ in idle:
                connection.close()
        self._idle.clear()

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl


_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UpstreamPool]" = weakref.WeakKeyDictionary()


def shared_pool() -> UpstreamPool:
    """The pool of the running event loop (connections belong to one loop)."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = UpstreamPool()
    return pool
