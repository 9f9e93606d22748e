"""Every use of Tornado's private or undocumented parts, in one place.

Each function names the assumption it makes about Tornado (checked on 6.6; the pin in
``setup.py`` is ``tornado>=6.3,<7``) and ``tests/test_tornado_internals.py`` has a test per
assumption, so a Tornado release that breaks one fails there, by name, not somewhere deep in
a handler.
"""
from __future__ import annotations

import asyncio
import http.client
import time
import weakref
from typing import Any, Callable, Iterable, Mapping

import tornado
import tornado.httpserver
import tornado.web
import tornado.websocket
from tornado import httputil
from tornado.concurrent import Future
from tornado.iostream import IOStream

__all__ = ["BARE_BAD_REQUEST", "FrameWriter", "TaskApplication", "body_cap", "frame_writer", "http_date",
           "http_stream", "is_finished", "new_headers", "preload_stream", "reason", "reset_response", "retype_stream",
           "set_safe_header", "set_safe_headers", "stop_request_timers", "websocket_backed_up"]

#: What Tornado writes for a request it cannot parse (``HTTP1Connection._read_message``) before
#: it closes the connection: a bare 400 without a body.
BARE_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"

#: ``WebSocketProtocol13._write_frame(fin, opcode, data) -> Future``.
FrameWriter = Callable[[bool, int, bytes], "Future[None]"]


def http_stream(handler: tornado.web.RequestHandler) -> IOStream | None:
    """The ``IOStream`` of an HTTP/1 request (``HTTP1Connection.stream``), None once detached."""
    stream = getattr(handler.request.connection, "stream", None)
    return stream if isinstance(stream, IOStream) else None


def is_finished(handler: tornado.web.RequestHandler) -> bool:
    """Whether ``finish()`` was called (``RequestHandler._finished``)."""
    return bool(handler._finished)


def set_safe_headers(handler: tornado.web.RequestHandler, headers: Mapping[str, str]) -> None:
    """Set response headers whose values are known to be safe (``RequestHandler._headers``).

    ``set_header`` checks every value against a regular expression (about 1 us a header);
    the rate-limit headers, made only of digits and quoted printable ASCII, skip the check.
    """
    response_headers = handler._headers
    for name, value in headers.items():
        response_headers[name] = value


def set_safe_header(handler: tornado.web.RequestHandler, name: str, value: str) -> None:
    """:func:`set_safe_headers` for one header."""
    handler._headers[name] = value


#: The ``Server`` header ``RequestHandler.clear`` sets.
SERVER_HEADER = "TornadoServer/%s" % tornado.version
_date_cache: list[tuple[int, str]] = [(-1, "")]


def http_date(now: float | None = None) -> str:
    """The ``Date`` header at ``now`` (default: the time), as ``httputil.format_timestamp`` gives it;
    formatted once a second (it shows whole seconds), not once a request."""
    second = int(time.time() if now is None else now)
    cached = _date_cache[0]
    if cached[0] != second:
        cached = _date_cache[0] = (second, httputil.format_timestamp(second))
    return cached[1]


#: ``HTTPHeaders`` keeps a header's values in ``_as_list`` (normalized name -> values) and their
#: joined form in ``_combined_cache`` (Tornado 6.5 and later), names normalized by ``_normalize_header``.
_HEADERS_LAYOUT = (vars(httputil.HTTPHeaders()) == {"_as_list": {}, "_combined_cache": {}}
                   and callable(getattr(httputil, "_normalize_header", None)))


def new_headers(pairs: Iterable[tuple[str, str]]) -> httputil.HTTPHeaders:
    """``HTTPHeaders`` holding ``pairs`` in order, a repeated name's values as ``add`` keeps
    them, for names and values already checked (a parser's, our own): without the constructor's
    generic ``update`` and a ``__setitem__`` per header (a third of the cost). Tornado's own way
    when its layout is not the one known (``_HEADERS_LAYOUT``)."""
    if not _HEADERS_LAYOUT:
        headers = httputil.HTTPHeaders()
        for name, value in pairs:
            if name in headers:
                headers.add(name, value)
            else:
                headers[name] = value
        return headers
    normalize = httputil._normalize_header
    as_list: dict[str, list[str]] = {}
    for name, value in pairs:
        norm = normalize(name)
        values = as_list.get(norm)
        if values is None:
            as_list[norm] = [value]
        else:
            values.append(value)
    headers = httputil.HTTPHeaders.__new__(httputil.HTTPHeaders)
    headers._as_list = as_list
    headers._combined_cache = {}
    return headers


def reset_response(handler: tornado.web.RequestHandler, content_type: str) -> None:
    """What ``RequestHandler.clear`` does before ``set_default_headers`` (``_headers``,
    ``_write_buffer``, ``_status_code``, ``_reason``), with ``content_type`` set at once and the
    ``Date`` formatted once a second: the same headers, in the same order, for less per request."""
    handler._headers = new_headers((("Server", SERVER_HEADER), ("Content-Type", content_type),
                                    ("Date", http_date())))
    handler._write_buffer = []
    handler._status_code = 200
    handler._reason = http.client.responses[200]


def reason(handler: tornado.web.RequestHandler) -> str:
    """The reason phrase of the status set (``RequestHandler._reason``)."""
    return str(handler._reason)


def frame_writer(handler: tornado.websocket.WebSocketHandler) -> FrameWriter | None:
    """Tornado's frame writer of an open, uncompressed WebSocket (``_write_frame``), or None.

    Writing a frame directly skips the task ``write_message`` makes per message; with
    compression negotiated (``_compressor``) the public path must be used.
    """
    protocol = handler.ws_connection
    if protocol is None or getattr(protocol, "_compressor", None) is not None:
        return None
    writer: FrameWriter | None = getattr(protocol, "_write_frame", None)
    return writer


def websocket_backed_up(handler: tornado.websocket.WebSocketHandler) -> bool:
    """True while the socket holds bytes the kernel has not taken (``stream.writing()``), or
    when there is no stream any more."""
    stream = getattr(handler.ws_connection, "stream", None)
    return not isinstance(stream, IOStream) or stream.writing()


def stop_request_timers(server: tornado.httpserver.HTTPServer) -> None:
    """Turn off Tornado's per-request header and body timers (``HTTPServer.conn_params``)."""
    server.conn_params.header_timeout = None
    server.conn_params.body_timeout = None


def body_cap(server: tornado.httpserver.HTTPServer) -> int:
    """The largest body the server reads (``conn_params.max_body_size``; 100 MiB when unset)."""
    return server.conn_params.max_body_size or 100 * 1024 * 1024


def retype_stream(stream: IOStream, cls: type[IOStream]) -> None:
    """Give a plain ``IOStream`` the behaviour of ``cls``, a subclass that adds no state
    (``IOStream`` has no ``__slots__``, so its instances accept a subclass as their class)."""
    if type(stream) is IOStream:
        stream.__class__ = cls


def preload_stream(stream: IOStream, data: bytes) -> None:
    """Put ``data`` in ``stream``'s read buffer, as if read from its socket (``_read_buffer``,
    ``_read_buffer_size``): the bytes a client sent right after its WebSocket handshake."""
    stream._read_buffer += data
    stream._read_buffer_size += len(data)


#: The handlers' tasks that run, per loop (asyncio keeps only weak references to tasks: what
#: ``IOLoop._pending_tasks`` does for Tornado's; a loop closed with some pending takes them along).
_running_handlers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[asyncio.Task[None]]]" = \
    weakref.WeakKeyDictionary()


def _handler_done(task: "asyncio.Task[None]") -> None:
    running = _running_handlers.get(task.get_loop())
    if running is not None:
        running.discard(task)
    if not task.cancelled():
        task.result()  # an error ``_execute`` let out is the loop's to log, as Tornado leaves it


class _TaskDelegate(tornado.web._HandlerDelegate):
    """Tornado's ``_HandlerDelegate`` whose ``execute`` starts the handler's ``_execute`` as a task
    of the running loop (``loop.create_task``), where Tornado's goes through ``gen.convert_yielded``
    (a ``singledispatch``, ``ensure_future``, ``IOLoop.current()`` and a task registry): 2.3 us
    against 6 a request. The rest is Tornado's ``execute``, line for line; with a template or
    static-file cache turned off (debug), Tornado's own."""

    def execute(self) -> Any:
        settings = self.application.settings
        if not settings.get("compiled_template_cache", True) or not settings.get("static_hash_cache", True):
            return super().execute()
        self.handler = self.handler_class(self.application, self.request, **self.handler_kwargs)
        transforms = [t(self.request) for t in self.application.transforms]
        loop = asyncio.get_running_loop()
        if self.stream_request_body:
            self.handler._prepared_future = loop.create_future()  # type: ignore[assignment]
        task = loop.create_task(self.handler._execute(transforms, *self.path_args, **self.path_kwargs))
        running = _running_handlers.get(loop)
        if running is None:
            running = _running_handlers[loop] = set()
        running.add(task)
        task.add_done_callback(_handler_done)
        return self.handler._prepared_future


class TaskApplication(tornado.web.Application):
    """A ``tornado.web.Application`` whose handlers start as plain tasks (:class:`_TaskDelegate`)."""

    def get_handler_delegate(self, request: httputil.HTTPServerRequest, target_class: type[tornado.web.RequestHandler],
                             target_kwargs: dict[str, Any] | None = None, path_args: list[bytes] | None = None,
                             path_kwargs: dict[str, bytes] | None = None) -> tornado.web._HandlerDelegate:
        return _TaskDelegate(self, request, target_class, target_kwargs, path_args, path_kwargs)
