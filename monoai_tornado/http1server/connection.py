"""One request's answer on a :class:`~.protocol.ServerProtocol`: Tornado's ``HTTPConnection``, on the transport.

``RequestHandler`` writes its answer through ``request.connection``: ``write_headers``,
``write``, ``finish``, ``set_close_callback`` and, for a WebSocket, ``detach``. This class
does what Tornado's ``HTTP1Connection`` does for a server answer (chunked framing when there is
no ``Content-Length``, ``Connection: close`` when the connection will close, a HTTP/1.0 client's
keep-alive, the ``Content-Length`` kept to, no CR or LF inside a header) and writes each piece
straight to the asyncio transport: no ``IOStream``, no future per write while the kernel takes
the bytes.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Protocol

from tornado import httputil
from tornado.iostream import IOStream, StreamClosedError

__all__ = ["Detached", "RequestConnection", "Wire"]

#: What a client that sent ``Expect: 100-continue`` is told before it sends its body (as Tornado).
CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"


class Wire(Protocol):
    """What an answer needs of its connection (:class:`~.protocol.ServerProtocol` has it)."""

    context: Any
    closed: bool

    def send(self, data: bytes) -> "asyncio.Future[None]": ...

    def flush(self) -> None: ...

    def written(self) -> "asyncio.Future[None]": ...

    def abort(self) -> None: ...

    def answer_finished(self, connection: "RequestConnection") -> None: ...

    def detach(self, answer: bytes) -> IOStream: ...


class Detached:
    """The wire of an answer whose socket was handed over: nothing more goes through it."""

    closed = True

    def __init__(self, context: Any) -> None:
        self.context = context

    def send(self, data: bytes) -> "asyncio.Future[None]":
        return self.written()

    def flush(self) -> None:
        pass

    def written(self) -> "asyncio.Future[None]":
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(StreamClosedError())
        failed.exception()
        return failed

    def abort(self) -> None:
        pass

    def answer_finished(self, connection: "RequestConnection") -> None:
        pass

    def detach(self, answer: bytes) -> IOStream:
        raise StreamClosedError()


class RequestConnection(httputil.HTTPConnection):
    """The answer to one request; ``context`` is the connection's peer (``remote_ip``, ``protocol``)."""

    __slots__ = ("protocol", "context", "start_line", "request_headers", "disconnect_on_finish", "upgrade",
                 "chunking", "remaining", "read_finished", "write_finished", "detached", "held", "close_callback")

    def __init__(self, protocol: Wire, start_line: httputil.RequestStartLine,
                 headers: httputil.HTTPHeaders, keep_alive: bool, upgrade: bool) -> None:
        self.protocol = protocol
        self.context = protocol.context
        self.start_line = start_line
        self.request_headers = headers
        self.disconnect_on_finish = not keep_alive or upgrade
        self.upgrade = upgrade
        self.chunking = False
        self.remaining: int | None = None
        self.read_finished = False
        self.write_finished = False
        self.detached = False
        #: An upgrade's answer is held here until it is detached (the WebSocket's stream sends
        #: it) or finished without (the transport sends it, then closes).
        self.held: list[bytes] | None = [] if upgrade else None
        self.close_callback: Callable[[], None] | None = None

    # -- Tornado's HTTPConnection

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self.close_callback = callback

    def write_headers(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                      headers: httputil.HTTPHeaders, chunk: bytes | None = None) -> "asyncio.Future[None]":
        assert isinstance(start_line, httputil.ResponseStartLine)
        request = self.start_line
        code = start_line.code
        self.chunking = (request.version == "HTTP/1.1" and request.method != "HEAD" and code not in (204, 304)
                         and not 100 <= code < 200 and "Content-Length" not in headers)
        if request.version == "HTTP/1.1" and self.disconnect_on_finish and code != 101:
            headers["Connection"] = "close"
        if request.version == "HTTP/1.0" and self.request_headers.get("Connection", "").lower() == "keep-alive":
            headers["Connection"] = "Keep-Alive"
        if self.chunking:
            headers["Transfer-Encoding"] = "chunked"
        if request.method == "HEAD" or code == 304:
            self.remaining = 0
        elif "Content-Length" in headers:
            self.remaining = int(headers["Content-Length"])
        else:
            self.remaining = None
        lines = [f"HTTP/1.1 {code} {start_line.reason}"]
        lines.extend(f"{name}: {value}" for name, value in headers.get_all())
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError(f"Illegal characters (CR or LF) in header: {line!r}")
        data = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"
        if chunk:
            data += self._framed(chunk)
        return self._send(data)

    def write(self, chunk: bytes) -> "asyncio.Future[None]":
        return self._send(self._framed(chunk))

    def finish(self) -> None:
        if self.remaining and not self.protocol.closed:
            self.protocol.abort()
            raise httputil.HTTPOutputError(f"Tried to write {self.remaining} bytes less than Content-Length")
        if self.chunking:
            self._send(b"0\r\n\r\n")
        self.write_finished = True
        self.close_callback = None
        if not self.read_finished:  # the body is still coming: only closing stops it
            self.disconnect_on_finish = True
        if self.held is None:
            self.protocol.flush()  # a whole answer leaves now, in one write
        self.protocol.answer_finished(self)

    def detach(self) -> IOStream:
        """The connection's socket as a Tornado ``IOStream`` (a WebSocket's), the held answer written on it.

        The protocol (its parser and buffers) is let go: the handler keeps this object, its
        ``request.connection``, for the WebSocket's whole life.
        """
        self.detached = True
        self.close_callback = None
        held, self.held = self.held or [], None
        stream = self.protocol.detach(b"".join(held))
        self.protocol = Detached(self.context)
        return stream

    # -- writing

    def _framed(self, chunk: bytes) -> bytes:
        if self.remaining is not None:
            self.remaining -= len(chunk)
            if self.remaining < 0:
                self.protocol.abort()
                raise httputil.HTTPOutputError("Tried to write more data than Content-Length")
        if self.chunking and chunk:  # an empty chunk would end the body
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return chunk

    def _send(self, data: bytes) -> "asyncio.Future[None]":
        if self.held is not None:
            self.held.append(data)
            return self.protocol.written()
        return self.protocol.send(data)

    def send_continue(self) -> None:
        """Tell a client waiting with ``Expect: 100-continue`` to send its body."""
        if not self.write_finished and self.held is None:
            self.protocol.send(CONTINUE)
