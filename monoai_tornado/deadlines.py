"""Connection deadlines for HTTP: slow headers, idle keep-alive and slow bodies, one timer for all.

Tornado enforces ``idle_connection_timeout`` and ``body_timeout`` with ``gen.with_timeout``:
a timer, a task and a chain of futures for every request, twice. :class:`DeadlineHTTPServer`
does the same job with two insertion-ordered dicts and one periodic sweep:

- from the moment a connection waits for a request until its headers are in: ``idle_timeout``
  (an idle keep-alive connection, or a client sending its headers slowly: slow-loris);
- from the headers until the whole body is in: ``body_timeout`` (a body sent slowly);
- while the handler runs and answers, no deadline (as in Tornado).

Each dict holds one phase, whose timeout is fixed, so its insertion order is deadline order and a
sweep stops at the first connection still in time. A connection past its deadline is closed,
exactly as Tornado's own timeouts do.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Protocol

import tornado.httpserver
import tornado.ioloop
from tornado import httputil

from .tornado_internals import body_cap, stop_request_timers
from .wire import declared_length, json_errors, refuse_oversized

log = logging.getLogger("monoai_tornado.http")

#: Seconds a connection may idle when no timeout is given (Tornado's ``idle_connection_timeout``).
DEFAULT_IDLE_TIMEOUT = 3600.0


class HTTPServerLike(Protocol):
    """What serving an application needs of its HTTP server (Tornado's ``HTTPServer`` has it)."""

    def listen(self, port: int, address: str | None = ...) -> None: ...

    def add_sockets(self, sockets: Any) -> None: ...

    def stop(self) -> None: ...

    async def close_all_connections(self) -> None: ...


class ConnectionDeadlines:
    """Which connections must have sent their headers or their body by when."""

    def __init__(self, idle_timeout: float | None, body_timeout: float | None,
                 close: Callable[[Any], None] = lambda connection: connection.stream.close()) -> None:
        """``close(connection)`` closes a connection past its deadline (by default Tornado's
        ``HTTP1ServerConnection``: its stream)."""
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self._headers_due: dict[Any, float] = {}
        self._body_due: dict[Any, float] = {}
        self._timer: tornado.ioloop.PeriodicCallback | None = None
        self._close = close

    @property
    def sweep_interval(self) -> float:
        """Seconds between sweeps: a quarter of the shortest timeout, within [0.05, 1]."""
        timeouts = [t for t in (self.idle_timeout, self.body_timeout) if t]
        return min(1.0, max(0.05, min(timeouts) / 4)) if timeouts else 1.0

    def start(self) -> None:
        """Start sweeping on the current IOLoop (once; again after :meth:`stop`)."""
        if self._timer is None:
            self._timer = tornado.ioloop.PeriodicCallback(self.sweep, self.sweep_interval * 1000)
            self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def waiting_for_request(self, connection: Any) -> None:
        self._body_due.pop(connection, None)
        if self.idle_timeout:
            self._headers_due[connection] = time.monotonic() + self.idle_timeout

    def reading_body(self, connection: Any) -> None:
        self._headers_due.pop(connection, None)
        if self.body_timeout:
            self._body_due[connection] = time.monotonic() + self.body_timeout

    def done(self, connection: Any) -> None:
        self._headers_due.pop(connection, None)
        self._body_due.pop(connection, None)

    @property
    def watched(self) -> int:
        """Connections with a deadline now (for tests and metrics)."""
        return len(self._headers_due) + len(self._body_due)

    def sweep(self) -> None:
        """Close every connection past its deadline."""
        now = time.monotonic()
        for due, what in ((self._headers_due, "request headers"), (self._body_due, "request body")):
            while due:
                connection, deadline = next(iter(due.items()))
                if deadline > now:
                    break
                del due[connection]
                log.info("closing a connection that took too long to send its %s", what)
                self._close(connection)


class _TimedRequest(httputil.HTTPMessageDelegate):
    """Passes a request through to Tornado's delegate, moving its connection between phases.

    ``connection`` is the ``HTTP1ServerConnection`` (one per TCP connection, where Tornado makes
    a new ``HTTP1Connection`` per request), so that :meth:`DeadlineHTTPServer.on_close` can
    forget it when the client hangs up between requests.
    """

    __slots__ = ("inner", "connection", "deadlines", "request_conn", "max_body_size")

    def __init__(self, inner: httputil.HTTPMessageDelegate, connection: Any, deadlines: ConnectionDeadlines,
                 request_conn: httputil.HTTPConnection, max_body_size: int):
        self.inner = inner
        self.connection = connection
        self.deadlines = deadlines
        self.request_conn = request_conn
        self.max_body_size = max_body_size

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        length = declared_length(headers) if "Content-Length" in headers else None
        if length is not None and length > self.max_body_size:
            self.deadlines.done(self.connection)
            refuse_oversized(self.request_conn, self.max_body_size)  # 413, not a reset
            return None
        self.deadlines.reading_body(self.connection)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        self.deadlines.done(self.connection)
        self.inner.finish()

    def on_connection_close(self) -> None:
        self.deadlines.done(self.connection)
        self.inner.on_connection_close()


class DeadlineHTTPServer(tornado.httpserver.HTTPServer):
    """An ``HTTPServer`` whose header, idle and body timeouts are kept by :class:`ConnectionDeadlines`.

    Takes ``idle_connection_timeout`` and ``body_timeout`` as ``HTTPServer`` does.
    """

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        idle_timeout = kwargs.get("idle_connection_timeout") or DEFAULT_IDLE_TIMEOUT
        body_timeout = kwargs.pop("body_timeout", None)
        super().initialize(*args, **kwargs)
        self.deadlines = ConnectionDeadlines(idle_timeout, body_timeout)
        self.max_body_size = body_cap(self)
        # Tornado's own per-request timers are replaced by the deadlines above.
        stop_request_timers(self)

    def add_sockets(self, sockets: Any) -> None:
        """Listen (``listen``, ``bind``/``start`` and ``add_sockets`` all end here) and start sweeping."""
        super().add_sockets(sockets)
        self.deadlines.start()

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        self.deadlines.waiting_for_request(server_conn)
        return _TimedRequest(delegate, server_conn, self.deadlines, request_conn, self.max_body_size)

    def handle_stream(self, stream: Any, address: Any) -> None:
        json_errors(stream)  # a request Tornado cannot parse gets a JSON 400, not an empty one
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        self.deadlines.done(server_conn)
        super().on_close(server_conn)

    def stop(self) -> None:
        self.deadlines.stop()
        super().stop()
