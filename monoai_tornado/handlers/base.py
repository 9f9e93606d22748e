"""The base of every HTTP handler: JSON answers, CORS, and errors rendered in one place."""
from __future__ import annotations

import hmac
import logging
from typing import Any

import tornado.web

from ..context import ServerContext
from ..identity import UNCHECKED, Unchecked
from ..keys import ApiKey
from ..errors import ApiError, Forbidden, NotFound
from ..fastjson import dumps as fast_dumps, dumps_bytes
from ..http1server.peer import PeerContext
from ..logs import log_access
from ..pipeline import Ticket
from ..ratelimit.headers import RATE_LIMIT_HEADERS, rate_limit_headers
from ..rendering import Shape, render_error
from ..request_trace import REQUEST_ID_HEADER, RequestTrace
from ..tornado_internals import reason, reset_response, set_safe_headers

log = logging.getLogger("monoai_tornado.http")

#: Headers a browser script may read on cross-origin answers (the playground shows them).
EXPOSED_HEADERS = ", ".join(["Retry-After", REQUEST_ID_HEADER, *RATE_LIMIT_HEADERS])


def dumps(value: Any) -> str:
    """Compact JSON with non-ASCII text kept as is (:func:`monoai_tornado.fastjson.dumps`)."""
    return fast_dumps(value)


class JsonHandler(tornado.web.RequestHandler):
    """Answers JSON, applies the CORS policy, renders every error as ``{"error", "code"}``."""

    context: ServerContext
    #: The endpoint's name in metrics.
    endpoint = "other"
    #: The admitted prompt (prompt handlers), for the access log.
    ticket: Ticket | None = None
    #: The shape of error bodies: ours, or OpenAI's on ``/v1``.
    error_shape: Shape = "json"
    _trace: RequestTrace | None = None
    #: The API key the request carries, once :meth:`caller_key` checked it.
    checked_key: ApiKey | None | Unchecked = UNCHECKED

    @property
    def trace(self) -> RequestTrace:
        """This request's id and trace context (the id is echoed as ``X-Request-Id`` on every answer)."""
        if self._trace is None:
            self._trace = RequestTrace.from_headers(self.request.headers)
        return self._trace

    def endpoint_label(self) -> str:
        return self.endpoint

    def on_finish(self) -> None:
        if hasattr(self, "context"):
            self.context.pipeline.metrics.count_request(self.endpoint_label(), self.get_status())
            if self._trace is not None and self._trace.tracing is not None:
                self.context.pipeline.end_trace(self._trace, self.get_status(), self.ticket)

    def initialize(self, context: ServerContext) -> None:
        self.context = context
        self._apply_cors()

    def clear(self) -> None:
        # Tornado's clear(), with JSON as the content type and the Date formatted once a second
        # (Tornado calls it before initialize() and again on errors).
        reset_response(self, "application/json; charset=UTF-8")
        self.set_default_headers()

    def set_default_headers(self) -> None:
        # Tornado calls this from clear(): before initialize() and again on errors.
        self.set_header(REQUEST_ID_HEADER, self.trace.request_id)
        if hasattr(self, "context"):
            self._apply_cors()

    def _apply_cors(self) -> None:
        origin = self.request.headers.get("Origin")
        if "*" in self.context.cors_origins:
            self.set_header("Access-Control-Allow-Origin", "*")
        elif origin is not None and self.context.origin_allowed(origin):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
        if origin is not None:
            # Only a cross-origin request (a browser sends Origin) needs the exposed headers.
            self.set_header("Access-Control-Expose-Headers", EXPOSED_HEADERS)

    def allowed_methods(self) -> list[str]:
        """The methods this handler implements (for ``Allow`` and CORS preflight)."""
        mro = type(self).__mro__
        own = mro[:mro.index(tornado.web.RequestHandler)]  # the classes above Tornado's base
        return [m for m in self.SUPPORTED_METHODS if any(m.lower() in vars(cls) for cls in own)]

    def options(self, *args: Any, **kwargs: Any) -> None:
        """CORS preflight: 204 with the allowed methods and headers."""
        self.set_status(204)
        self.clear_header("Content-Type")
        self.set_header("Access-Control-Allow-Methods", ", ".join(self.allowed_methods()))
        requested = self.request.headers.get("Access-Control-Request-Headers")
        self.set_header("Access-Control-Allow-Headers", requested or "Content-Type, Authorization, Accept")
        self.set_header("Access-Control-Max-Age", "86400")
        self.finish()

    def send_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(dumps_bytes(value))

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        """An :class:`ApiError` is the client's problem, an answer: no traceback, and its one line
        is the access log's (with the user and the time); the rest as Tornado does."""
        if not isinstance(value, ApiError):
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error answer: the body and headers :func:`render_error` gives."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if self.ticket is not None:  # an admitted request's failure still shows its rate limits
            self.set_limit_headers(self.ticket)
        answer = render_error(exc, shape=self.error_shape, status=status_code, reason=reason(self))
        self.set_status(answer.status)
        for name, value in answer.headers.items():
            self.set_header(name, value)
        if answer.status == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(dumps(answer.body))

    def set_limit_headers(self, ticket: Ticket) -> None:
        """The rate-limit headers of an admitted request (none without a limiter)."""
        if ticket.admission is not None:
            set_safe_headers(self, rate_limit_headers(ticket.admission.states))

    @property
    def peer_ip(self) -> str:
        return self.request.remote_ip or "unknown"

    async def caller_key(self) -> ApiKey | None:
        """The API key the request carries (None without a key store or a key); 401 for a wrong
        key, or a missing one under ``--require-api-key``: every route that needs a key needs it."""
        keys = self.context.keys
        if keys is None:
            return None
        if self.checked_key is UNCHECKED:  # checked once: admission reads it from here
            context = getattr(self.request.connection, "context", None)
            memo = context if isinstance(context, PeerContext) else None  # (our HTTP/1 server's connections)
            self.checked_key = await keys.from_headers(self.request.headers, memo)
        return self.checked_key

    def require_admin(self) -> None:
        """403 unless the configured admin token is presented as a Bearer token."""
        token = self.context.admin_token
        if token is None:
            return
        given = self.request.headers.get("Authorization", "")
        if not given.startswith("Bearer ") or not self.is_admin_token(given[7:]):
            raise Forbidden("This endpoint requires the admin token")

    def is_admin_token(self, given: str) -> bool:
        """True when ``given`` is the configured admin token (compared in constant time)."""
        token = self.context.admin_token
        return token is not None and hmac.compare_digest(given.encode(), token.encode())


class NotFoundHandler(JsonHandler):
    """The default handler: a JSON 404 for every unknown path (any method)."""

    endpoint = "unknown"

    def prepare(self) -> None:
        if "/v1/" in self.request.path:
            self.error_shape = "openai"  # an OpenAI client that took a wrong path reads OpenAI's shape
        if self.request.method != "OPTIONS":
            raise NotFound(f"No endpoint at {self.request.path}")

    def options(self, *args: Any, **kwargs: Any) -> None:
        raise NotFound(f"No endpoint at {self.request.path}")


access_log = logging.getLogger("monoai_tornado.access")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log line: status, method, path, user identity, tokens, request id and duration."""
    status = handler.get_status()
    if status < 400:
        level = logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    request = handler.request
    if isinstance(handler, JsonHandler):
        ticket, route, trace = handler.ticket, handler.endpoint_label(), handler.trace
    else:
        ticket, route, trace = None, "other", None
    log_access(level, method=request.method or "-", path=request.uri or "-", route=route, status=status,
               ticket=ticket, trace=trace, remote_ip=request.remote_ip, seconds=request.request_time())
