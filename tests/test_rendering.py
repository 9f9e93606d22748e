"""One error renderer: every transport's error answer comes from ``render_error``."""
from __future__ import annotations

import pytest
from tornado.web import HTTPError

from monoai_tornado.errors import (BackendError, BackendTimeout, Forbidden, InvalidJson, LimiterUnavailable,
                                   NotFound, Overloaded, PayloadTooLarge, RateLimited)
from monoai_tornado.ratelimit import Limit, RateLimiter
from monoai_tornado.rendering import render_error


def test_an_api_error_renders_as_its_status_code_and_message() -> None:
    answer = render_error(InvalidJson("Request body is not valid JSON"))
    assert answer.status == 400
    assert answer.body == {"error": "Request body is not valid JSON", "code": "invalid_json"}
    assert answer.headers == {}


def test_retry_after_is_a_header_and_a_field() -> None:
    answer = render_error(Overloaded("busy", retry_after=1))
    assert answer.status == 503
    assert answer.headers == {"Retry-After": "1"}
    assert answer.body == {"error": "busy", "code": "overloaded", "retry_after": 1}


async def test_a_refusal_carries_the_rate_limit_headers() -> None:
    limiter = RateLimiter([Limit("request", 1, "minute")])
    await limiter.admit("u")
    refused = await limiter.admit("u")
    answer = render_error(RateLimited("slow down", retry_after=7, states=refused.states))
    assert answer.status == 429
    assert answer.headers["Retry-After"] == "7"
    assert answer.headers["x-ratelimit-remaining-requests"] == "0"
    assert answer.body["retry_after"] == 7


def test_a_bug_shows_nothing_of_itself() -> None:
    answer = render_error(KeyError("secret internals"))
    assert answer.status == 500
    assert answer.body == {"error": "Internal server error", "code": "internal_error"}


def test_tornado_errors_render_by_status() -> None:
    assert render_error(HTTPError(405)).body == {"error": "Method Not Allowed", "code": "method_not_allowed"}
    assert render_error(None, status=400, reason="Bad Request").body["code"] == "bad_request"
    assert render_error(HTTPError(500, "detail")).body["code"] == "internal_error"


@pytest.mark.parametrize("exc, status, kind", [
    (InvalidJson("x"), 400, "invalid_request_error"),
    (PayloadTooLarge("x"), 413, "invalid_request_error"),
    (Forbidden("x"), 403, "permission_error"),
    (NotFound("x", code="model_not_found"), 404, "not_found_error"),
    (RateLimited("x", retry_after=1), 429, "rate_limit_error"),
    (BackendError("x"), 502, "api_error"),
    (BackendTimeout("x"), 504, "api_error"),
    (Overloaded("x"), 503, "overloaded_error"),
    (LimiterUnavailable("x"), 503, "overloaded_error"),
    (ValueError("x"), 500, "api_error"),
])
def test_the_openai_shape(exc: Exception, status: int, kind: str) -> None:
    answer = render_error(exc, shape="openai")
    assert answer.status == status
    error = answer.body["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["type"] == kind
    assert error["code"] == render_error(exc).body["code"]
    assert error["param"] is None
