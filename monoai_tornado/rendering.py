"""One renderer for every error a client can see: an exception in, status, body and headers out.

Every transport frames the same :class:`ErrorAnswer`: HTTP JSON writes ``body`` with
``status`` and ``headers``; SSE sends ``body`` as its ``error`` event; WebSocket sends ``body``
as a message; the OpenAI-compatible front asks for ``shape="openai"``, the Anthropic one for
``shape="anthropic"`` (where 503 ``overloaded`` is 529).

>>> from monoai_tornado.errors import NotFound
>>> render_error(NotFound("Agent 'x' not found")).body
{'error': "Agent 'x' not found", 'code': 'not_found'}
>>> render_error(NotFound("no such model", code="model_not_found"), shape="openai").body["error"]["type"]
'not_found_error'
"""
from __future__ import annotations

import http.client
from dataclasses import dataclass, field
from typing import Any, Literal

from tornado.web import HTTPError

from .errors import ApiError, RateLimited
from .ratelimit.headers import rate_limit_headers

__all__ = ["ErrorAnswer", "Shape", "render_error", "HTTP_CODES", "OPENAI_TYPES", "INTERNAL_ERROR"]

Shape = Literal["json", "openai", "anthropic"]

#: Codes for errors Tornado raises itself (unknown method, bad request line, ...).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    426: "upgrade_required",
    429: "rate_limited",
    502: "backend_error",
    503: "unavailable",
    504: "backend_timeout",
}

#: OpenAI's error ``type`` by HTTP status (API.md Part 2, "OpenAI-compatible front").
OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}

#: Anthropic answers 529 where we answer 503 because the server or its upstream is overloaded.
ANTHROPIC_STATUSES = {"overloaded": 529, "upstream_busy": 529}

#: The body of an unexpected exception: nothing of it leaks to the client.
INTERNAL_ERROR = "Internal server error"


@dataclass(frozen=True)
class ErrorAnswer:
    """What a transport sends for an error: HTTP status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _openai_type(status: int) -> str:
    if status in OPENAI_TYPES:
        return OPENAI_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def _parts(exc: BaseException | None, status: int, reason: str | None) -> tuple[int, dict[str, Any]]:
    """``(status, JSON body)`` of an exception (or of a bare status)."""
    if isinstance(exc, ApiError):
        return exc.status, exc.to_dict()
    if isinstance(exc, HTTPError):
        status = exc.status_code
        reason = exc.log_message % exc.args if exc.log_message else exc.reason or reason
    elif exc is not None:
        status = 500  # a bug: nothing of it is shown
    if status >= 500:
        return status, {"error": INTERNAL_ERROR, "code": "internal_error"}
    message = reason or http.client.responses.get(status, "Error")
    return status, {"error": message, "code": HTTP_CODES.get(status, "http_error")}


def render_error(exc: BaseException | None, *, shape: Shape = "json", status: int = 500,
                 reason: str | None = None) -> ErrorAnswer:
    """The answer to ``exc``: an :class:`ApiError` as itself, a Tornado ``HTTPError`` under 500
    by its status, anything else as a bare 500 ``internal_error``. Without an exception,
    ``status`` and ``reason`` describe the error (Tornado's own ``send_error``).
    """
    status, body = _parts(exc, status, reason)
    headers: dict[str, str] = {}
    if isinstance(exc, ApiError):
        if isinstance(exc, RateLimited):
            headers.update(rate_limit_headers(exc.states))
        headers.update(exc.headers)
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
    if shape == "openai":
        body = {"error": {"message": body["error"], "type": _openai_type(status), "code": body["code"],
                          "param": None}}
    elif shape == "anthropic":
        status = ANTHROPIC_STATUSES.get(body["code"], status)
        body = {"type": "error", "error": {"type": _openai_type(503 if status == 529 else status),
                                           "message": body["error"]}}
    return ErrorAnswer(status, body, headers)
