"""Limits passed to one admission (an API key's) replace the limiter's own, on both stores."""
from __future__ import annotations

from monoai_tornado.ratelimit import Limit
from tests.support.ratelimit_fixtures import (  # noqa: F401  (fixtures)
    FakeClock, LimiterFactory, clock, make_limiter, redis_prefix, store_kind,
)

DEFAULT = Limit("request", 2, "minute")
KEY_LIMITS = (Limit("request", 5, "minute"), Limit("token", 100, "hour"))


async def test_a_request_held_to_other_limits_passes_where_the_defaults_refuse(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([DEFAULT])
    outcomes = [(await limiter.admit("alice", 1, KEY_LIMITS)).allowed for _ in range(7)]
    assert outcomes == [True] * 5 + [False] * 2
    # The defaults still hold another user (and alice's key limits did not touch them).
    assert [(await limiter.admit("bob")).allowed for _ in range(3)] == [True, True, False]


async def test_the_states_and_stats_are_those_of_the_limits_applied(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([DEFAULT])
    admission = await limiter.admit("alice", 30, KEY_LIMITS)
    assert [(s.limit, s.used, s.remaining) for s in admission.states] == [(KEY_LIMITS[0], 1, 4),
                                                                          (KEY_LIMITS[1], 30, 70)]
    stats = await limiter.user_stats("alice", KEY_LIMITS)
    assert stats["usage"] == {"5-per-60": 1, "100-tokens-per-3600": 30}
    assert (await limiter.user_stats("alice"))["usage"] == {"2-per-60": 0}


async def test_settling_corrects_the_token_limits_of_the_admission(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([DEFAULT])
    admission = await limiter.admit("alice", 10, KEY_LIMITS)
    await limiter.settle(admission, 95)
    assert (await limiter.user_stats("alice", KEY_LIMITS))["usage"]["100-tokens-per-3600"] == 95
    refused = await limiter.admit("alice", 6, KEY_LIMITS)
    assert not refused.allowed and refused.retry_after > 0


async def test_an_empty_limiter_still_holds_a_request_to_given_limits(make_limiter: LimiterFactory,
                                                                      clock: FakeClock) -> None:
    limiter = make_limiter([])
    assert (await limiter.admit("anyone", 10**9)).allowed  # no limits of its own: all pass
    one = (Limit("request", 1, "minute"),)
    assert [(await limiter.admit("carol", 0, one)).allowed for _ in range(2)] == [True, False]
    clock.advance(60)
    assert (await limiter.admit("carol", 0, one)).allowed
