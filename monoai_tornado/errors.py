"""Errors a client can see, each with its HTTP status and machine code (API.md "Errors").

Every error that reaches a client is an :class:`ApiError`; handlers render them in one place
(``write_error`` for HTTP, an error message for WebSocket). Other exceptions are bugs and are
rendered as a generic 500 without a traceback.
"""
from __future__ import annotations

from typing import Any, Mapping

from tornado.web import HTTPError


class ApiError(HTTPError):
    """An error with an HTTP status, a machine code and a human readable message.

    It is a Tornado ``HTTPError``, so raising it in a handler gives its status (logged as a
    warning, not as an uncaught exception) and ``write_error`` renders :meth:`to_dict`.
    """

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        super().__init__(self.status, message)
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: ``{"error": ..., "code": ...}`` plus any extra fields."""
        return {"error": self.message, "code": self.code, **self.extra}


class InvalidJson(ApiError):
    status, code = 400, "invalid_json"


class MissingPrompt(ApiError):
    status, code = 400, "missing_prompt"


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class BackendError(ApiError):
    """The model backend failed or answered nonsense (root of every backend failure)."""

    status, code = 502, "backend_error"


class BackendTimeout(BackendError):
    """The model backend did not answer in time."""

    status, code = 504, "backend_timeout"


class LimiterUnavailable(ApiError):
    """The rate limiter's store (Redis) cannot be reached."""

    status, code = 503, "limiter_unavailable"


class Overloaded(ApiError):
    status, code = 503, "overloaded"


class ShuttingDown(ApiError):
    """The server stopped a run because it is shutting down past its drain timeout."""

    status, code = 503, "shutting_down"


class ClientGone(Exception):
    """The client went away while its answer was being written (not an error to report)."""
