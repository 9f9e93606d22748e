"""rate_limit_headers: OpenAI-style x-ratelimit-* and the IETF RateLimit-Policy / RateLimit."""
from __future__ import annotations

from monoai_tornado.ratelimit import Limit, LimitState, RateLimiter, rate_limit_headers
from tests.support.ratelimit_fixtures import FakeClock

MINUTE = Limit("request", 10, "minute")
HOUR = Limit("request", 100, "hour")
TOKENS = Limit("token", 10000, "hour")


def state(limit: Limit, used: int, reset_in: float) -> LimitState:
    return LimitState(limit, used, max(0, limit.value - used), reset_in)


def test_no_states_no_headers() -> None:
    assert rate_limit_headers([]) == {}


def test_request_and_token_limits() -> None:
    headers = rate_limit_headers([state(MINUTE, 7, 41.2), state(TOKENS, 958, 1799.5)])
    assert headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "42",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "9042",
        "x-ratelimit-reset-tokens": "1800",
        "RateLimit-Policy": '"10-per-60";q=10;w=60, "10000-tokens-per-3600";q=10000;w=3600',
        "RateLimit": '"10-per-60";r=3;t=42, "10000-tokens-per-3600";r=9042;t=1800',
    }


def test_only_configured_units_appear() -> None:
    headers = rate_limit_headers([state(MINUTE, 1, 10.0)])
    assert not any(name.endswith("-tokens") for name in headers)
    assert headers["RateLimit"] == '"10-per-60";r=9;t=10'
    tokens_only = rate_limit_headers([state(TOKENS, 0, 5.0)])
    assert not any(name.endswith("-requests") for name in tokens_only)
    assert tokens_only["x-ratelimit-remaining-tokens"] == "10000"


def test_tightest_is_least_remaining() -> None:
    headers = rate_limit_headers([state(MINUTE, 2, 30.0), state(HOUR, 95, 3000.0)])
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "5"
    assert headers["x-ratelimit-reset-requests"] == "3000"
    assert headers["RateLimit"] == '"100-per-3600";r=5;t=3000'
    assert headers["RateLimit-Policy"] == '"10-per-60";q=10;w=60, "100-per-3600";q=100;w=3600'


def test_tie_goes_to_the_soonest_reset() -> None:
    headers = rate_limit_headers([state(HOUR, 100, 3000.0), state(MINUTE, 10, 12.5)])
    assert headers["x-ratelimit-limit-requests"] == "10"
    assert headers["x-ratelimit-reset-requests"] == "13"


def test_names_are_structured_field_strings() -> None:
    odd = Limit("request", 1, "second", name='say "hi" \\ café')
    headers = rate_limit_headers([state(odd, 0, 0.2)])
    assert headers["RateLimit-Policy"] == '"say \\"hi\\" \\\\ caf?";q=1;w=1'
    assert headers["x-ratelimit-reset-requests"] == "1"


async def test_headers_from_a_real_admission() -> None:
    limiter = RateLimiter([MINUTE, TOKENS], clock=FakeClock())
    admission = await limiter.admit("alice", 42)
    headers = rate_limit_headers(admission.states)
    assert headers["x-ratelimit-remaining-requests"] == "9"
    assert headers["x-ratelimit-remaining-tokens"] == "9958"
    assert headers["x-ratelimit-reset-requests"] == "60"  # 59.75 s, rounded up
    assert headers["RateLimit"] == '"10-per-60";r=9;t=60, "10000-tokens-per-3600";r=9958;t=3600'
