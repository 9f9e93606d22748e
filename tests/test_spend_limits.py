"""Spend limits in the limiter: money reserved at admission beside requests and tokens, in one
atomic step, settled to the real cost; on the memory store, Redis and a Redis Cluster.

Prices here: $0.001 per million prompt tokens (1 nano-dollar a token) and $0.002 per million
completion tokens (2 nano-dollars a token), so the figures are easy to follow.
"""
from __future__ import annotations

import calendar
import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.ratelimit_fixtures import (  # noqa: F401  (fixtures)
    FakeClock,
    LimiterFactory,
    clock,
    make_limiter,
    redis_prefix,
    store_kind,
)

from monoai_tornado.errors import ModelNotPriced
from monoai_tornado.money import Prices, usd
from monoai_tornado.ratelimit import Limit, RateLimiter
from monoai_tornado.ratelimit.limits import parse_spend_limit

PRICES = Prices.per_million(0.001, 0.002)
SPEND = parse_spend_limit("0.000001/hour")  # 1000 nano-dollars an hour
S = SPEND.name


async def spend(limiter: RateLimiter, user: str, limit: Limit = SPEND) -> dict[str, float]:
    return (await limiter.user_stats(user))["spend"][limit.name]  # type: ignore[no-any-return]


async def test_admission_reserves_the_prompt_and_the_cap_and_settlement_bills_the_real_cost(
    make_limiter: LimiterFactory,
) -> None:
    limiter = make_limiter([Limit("request", 10, "minute"), SPEND])
    admission = await limiter.admit("alice", 100, max_tokens=200, quote=PRICES.quote(100))
    assert admission.allowed and admission.max_tokens == 200
    assert admission.reserved_nanos == 100 + 200 * 2
    assert await spend(limiter, "alice") == {"used_usd": 0.0, "reserved_usd": 5e-7, "left_usd": 5e-7,
                                             "reset_in": pytest.approx(3600 - 0.25)}
    await limiter.settle(admission, 100 + 50, cost_nanos=PRICES.cost_nanos(100, 0, 50))  # 50 of its 200
    assert await spend(limiter, "alice") == {"used_usd": 2e-7, "reserved_usd": 0.0, "left_usd": 8e-7,
                                             "reset_in": pytest.approx(3600 - 0.25)}
    stats = await limiter.stats()
    assert stats["spend"][S]["used_usd"] == 2e-7 and "0.000001-usd-per-3600" not in stats["windows"]


async def test_the_cap_shrinks_to_what_the_money_left_buys(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([SPEND])
    first = await limiter.admit("alice", 100, max_tokens=300, quote=PRICES.quote(100))  # 100 + 600 reserved
    assert first.reserved_nanos == 700
    second = await limiter.admit("alice", 100, max_tokens=300, quote=PRICES.quote(100))  # 300 left: 100 + 2*100
    assert second.allowed and second.max_tokens == 100 and second.reserved_nanos == 300
    refused = await limiter.admit("alice", 1, max_tokens=300, quote=PRICES.quote(1))  # nothing left
    assert not refused.allowed and refused.spend_limited and 3590 < refused.retry_after <= 3600
    assert await spend(limiter, "alice") == {"used_usd": 0.0, "reserved_usd": 1e-6, "left_usd": 0.0,
                                             "reset_in": pytest.approx(3600 - 0.25)}


async def test_a_spend_refusal_counts_no_request_and_a_request_refusal_no_money(make_limiter: LimiterFactory) -> None:
    requests = Limit("request", 1, "minute")
    limiter = make_limiter([requests, SPEND])
    big = await limiter.admit("alice", 2000, max_tokens=10, quote=PRICES.quote(2000))  # its prompt alone: 2000 n$
    assert not big.allowed and big.spend_limited
    assert (await limiter.user_stats("alice"))["usage"][requests.name] == 0
    assert (await limiter.admit("alice", 10, max_tokens=10, quote=PRICES.quote(10))).allowed
    again = await limiter.admit("alice", 10, max_tokens=10, quote=PRICES.quote(10))
    assert not again.allowed and not again.spend_limited
    assert (await spend(limiter, "alice"))["reserved_usd"] == 3e-8  # the first only


async def test_a_model_without_prices_cannot_run_under_a_spend_limit(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([Limit("request", 10, "minute"), SPEND])
    with pytest.raises(ModelNotPriced):
        await limiter.admit("alice", 10, max_tokens=10)
    assert (await limiter.user_stats("alice"))["usage"]["10-per-60"] == 0
    assert (await make_limiter([Limit("request", 10, "minute")]).admit("bob", 10, max_tokens=10)).allowed


async def test_a_run_admitted_on_the_31st_and_ended_on_the_1st_is_billed_once_to_its_month(
    make_limiter: LimiterFactory, clock: FakeClock, store_kind: str,
) -> None:
    monthly = parse_spend_limit("0.00001/month")  # 10,000 nano-dollars a calendar month
    clock.now = calendar.timegm((2026, 12, 31, 12, 0, 0)) + 0.5
    limiter = make_limiter([monthly])
    admission = await limiter.admit("alice", 100, max_tokens=1000, quote=PRICES.quote(100))
    assert admission.allowed and admission.reserved_nanos == 2100
    december = await spend(limiter, "alice", monthly)
    assert december["reserved_usd"] == 2.1e-6 and december["reset_in"] == pytest.approx(12 * 3600 - 0.5)
    clock.now += 12 * 3600  # January 1st, 00:00:00.5 UTC: the run ends now
    await limiter.settle(admission, 100 + 700, cost_nanos=PRICES.cost_nanos(100, 0, 700))
    january = await spend(limiter, "alice", monthly)
    assert january == {"used_usd": 0.0, "reserved_usd": 0.0, "left_usd": 1e-5,
                       "reset_in": pytest.approx(31 * 86400 - 0.5)}
    if store_kind != "memory":  # the memory store keeps the current month only
        clock.now -= 1  # a reader still in December sees the run billed there, once, at its real cost
        assert await spend(limiter, "alice", monthly) == {"used_usd": 1.5e-6, "reserved_usd": 0.0,
                                                          "left_usd": 8.5e-6, "reset_in": pytest.approx(0.5)}


def test_spend_limit_windows_are_calendar_periods_in_utc() -> None:
    monthly, daily = parse_spend_limit("100/month"), parse_spend_limit("5/day")
    feb = calendar.timegm((2028, 2, 10, 12, 0, 0))
    start = monthly.window_start(feb)
    assert datetime.datetime.fromtimestamp(start, datetime.timezone.utc).isoformat() == "2028-02-01T00:00:00+00:00"
    assert monthly.window_end(start) - start == 29 * 86400  # a leap February
    assert daily.window_start(feb) == calendar.timegm((2028, 2, 10, 0, 0, 0))
    assert (monthly.name, daily.name, parse_spend_limit("0.50/hour").name) == (
        "100-usd-per-month", "5-usd-per-86400", "0.5-usd-per-3600")


async def test_large_budgets_and_prices_stay_exact(make_limiter: LimiterFactory) -> None:
    """$9,000,000 a month (9e15 nano-dollars) and a run of $120,000: integers all the way (Redis
    gets integer text, never 1.2e+14, and the grant is exact where doubles would round)."""
    monthly = parse_spend_limit("9000000/month")
    limiter = make_limiter([monthly])
    prices = Prices.per_million(600, 75)
    prompt = 200_000_000  # 1.2e14 nano-dollars of prompt
    admission = await limiter.admit("big", prompt, max_tokens=1000, quote=prices.quote(prompt))
    assert admission.allowed and admission.reserved_nanos == prices.cost_nanos(prompt, 0, 1000) == 120_000_075_000_000
    billed = prices.cost_nanos(prompt, 50_000_001, 333)
    await limiter.settle(admission, prompt + 333, cost_nanos=billed)
    figures = await spend(limiter, "big", monthly)
    assert (figures["used_usd"], figures["reserved_usd"]) == (round(billed / 1e9, 9), 0.0)
    assert figures["left_usd"] == round((9_000_000 * 10**9 - billed) / 1e9, 9)


async def test_token_and_spend_limits_grant_the_smaller_cap_and_settle_together(make_limiter: LimiterFactory) -> None:
    tokens = Limit("token", 400, "hour")
    limiter = make_limiter([tokens, SPEND])  # 1000 nano-dollars: 100 prompt + 450 completion tokens' worth
    first = await limiter.admit("alice", 100, max_tokens=1000, quote=PRICES.quote(100))
    assert first.max_tokens == 300 and first.reserved_tokens == 400 and first.reserved_nanos == 700  # tokens bind
    await limiter.settle(first, 100 + 50, cost_nanos=PRICES.cost_nanos(100, 0, 50))  # 200 nano-dollars
    second = await limiter.admit("alice", 100, max_tokens=1000, quote=PRICES.quote(100))
    assert second.max_tokens == 150 and second.reserved_nanos == 400  # tokens: 400-150-100=150; money: 800-100 buys 350
    stats = await limiter.user_stats("alice")
    assert stats["usage"][tokens.name] == 400 and stats["reserved"][tokens.name] == 250
    assert stats["spend"][S] == {"used_usd": 2e-7, "reserved_usd": 4e-7, "left_usd": 4e-7,
                                 "reset_in": pytest.approx(3600 - 0.25)}


@given(nanos=st.integers(min_value=0, max_value=10 ** 16))
def test_a_cost_in_usd_is_its_nano_dollars_rounded_to_nine_decimals(nanos: int) -> None:
    """``cost_usd`` shows a whole number of nano-dollars (up to ten million dollars) as the
    float nearest it: rounding it to nine decimals again changes nothing."""
    shown = usd(nanos)
    assert shown == round(nanos / 1_000_000_000, 9) == float(f"{nanos // 10**9}.{nanos % 10**9:09d}")
