"""Errors a client can see, each with its HTTP status and machine code (API.md "Errors").

Every error that reaches a client is an :class:`ApiError`, a plain exception that knows
nothing of Tornado; :func:`monoai_tornado.rendering.render_error` turns any exception into the
status, body and headers of every transport (JSON, SSE, WebSocket, OpenAI's shape). Other
exceptions are bugs and are rendered as a generic 500 without a traceback.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from .ratelimit.state import LimitState


class ApiError(Exception):
    """An error with an HTTP status, a machine code and a human readable message.

    ``retry_after`` (seconds) becomes a ``Retry-After`` header and a ``retry_after`` field;
    ``headers`` are any other headers the answer must carry.
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
        retry_after: int | None = None,
    ) -> None:
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: ``{"error": ..., "code": ...}`` plus any extra fields."""
        body = {"error": self.message, "code": self.code, **self.extra}
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body


class InvalidJson(ApiError):
    status, code = 400, "invalid_json"


class MissingPrompt(ApiError):
    status, code = 400, "missing_prompt"


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class InvalidApiKey(ApiError):
    """A wrong, revoked, expired or malformed API key (``WWW-Authenticate: Bearer``)."""

    status, code = 401, "invalid_api_key"

    def __init__(self, message: str = "Invalid API key", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class MissingApiKey(InvalidApiKey):
    """No API key on a server that requires one."""

    code = "missing_api_key"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class ModelNotAllowed(Forbidden):
    """The request's API key names the models it may use, and not this one."""

    code = "model_not_allowed"


class NotFound(ApiError):
    status, code = 404, "not_found"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class RateLimited(ApiError):
    """A limit is exhausted; ``states`` are the limits' figures after the refusal."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after: int, states: Sequence[LimitState] = ()) -> None:
        super().__init__(message, retry_after=retry_after)
        self.states = tuple(states)


class SpendLimited(RateLimited):
    """A spend limit (USD per window) has no room for the prompt's cost; ``Retry-After`` is the
    seconds to the window's end."""

    code = "spend_limited"


class ModelNotPriced(ApiError):
    """A spend limit applies but the model has no prices: its spend could not be held."""

    status, code = 403, "model_not_priced"


class TooManyConcurrent(ApiError):
    """The user already has as many runs in flight as the concurrency limit allows."""

    status, code = 429, "too_many_concurrent"


class BackendError(ApiError):
    """The model backend failed or answered nonsense (root of every backend failure)."""

    status, code = 502, "backend_error"


class BackendTimeout(BackendError):
    """The model backend did not answer in time."""

    status, code = 504, "backend_timeout"


class UpstreamRejected(ApiError):
    """The model server refused the request itself (a prompt over its context window...)."""

    status, code = 400, "upstream_rejected"


class UpstreamBusy(ApiError):
    """The model server is rate limited or overloaded; ``Retry-After`` says when to come back."""

    status, code = 503, "upstream_busy"


class LimiterUnavailable(ApiError):
    """The rate limiter's store (Redis) cannot be reached."""

    status, code = 503, "limiter_unavailable"


class KeyStoreUnavailable(ApiError):
    """The API key store (Redis) cannot be reached, and the key is not in the cache."""

    status, code = 503, "key_store_unavailable"


class Overloaded(ApiError):
    status, code = 503, "overloaded"


class ShuttingDown(ApiError):
    """The server stopped a run because it is shutting down past its drain timeout."""

    status, code = 503, "shutting_down"


class ClientGone(Exception):
    """The client went away while its answer was being written (not an error to report)."""
