"""Reservations and concurrency slots in the limiter: one suite, on the memory store and on Redis.

Admission reserves the prompt plus ``min(max_tokens, what is left)`` in the same atomic step
that checks and counts the request limits; settlement corrects it to the real total and gives
the rest back at once; a concurrency slot is taken and released alike.
"""
from __future__ import annotations

import asyncio

import pytest

from tests.support.ratelimit_fixtures import (  # noqa: F401  (fixtures)
    FakeClock,
    LimiterFactory,
    clock,
    make_limiter,
    redis_prefix,
    store_kind,
)

from monoai_tornado.ratelimit import Limit, RateLimiter

TOKENS = Limit("token", 1000, "hour")
T = TOKENS.name


async def figures(limiter: RateLimiter, user: str) -> tuple[int, int]:
    stats = await limiter.user_stats(user)
    return stats["usage"][T], stats["reserved"][T]


async def test_admission_reserves_the_prompt_and_the_cap_and_settlement_gives_back_the_rest(
    make_limiter: LimiterFactory,
) -> None:
    limiter = make_limiter([Limit("request", 10, "minute"), TOKENS])
    admission = await limiter.admit("alice", 50, max_tokens=300)
    assert admission.allowed and admission.max_tokens == 300 and admission.reserved_tokens == 350
    assert await figures(limiter, "alice") == (350, 350)
    assert admission.states[1].remaining == 650  # the headers tell what is left after the reservation
    await limiter.settle(admission, 50 + 120)  # the answer took 120 of its 300
    assert await figures(limiter, "alice") == (170, 0)
    stats = await limiter.stats()
    assert stats["totals"]["tokens"] == 170 and stats["reserved_tokens"] == 0


async def test_a_run_that_fits_with_less_than_its_cap_gets_the_smaller_cap(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([TOKENS])
    first = await limiter.admit("alice", 100, max_tokens=700)
    assert first.max_tokens == 700
    second = await limiter.admit("alice", 100, max_tokens=700)  # 1000 - 800 - 100 = 100 left for it
    assert second.allowed and second.max_tokens == 100 and second.reserved_tokens == 200
    assert await figures(limiter, "alice") == (1000, 1000)
    refused = await limiter.admit("alice", 1, max_tokens=700)  # nothing left, not even one token
    assert not refused.allowed and not refused.too_many_concurrent and refused.retry_after > 0
    stats = await limiter.stats()
    assert stats["reserved_tokens"] == 1000 and stats["windows"][T]["reserved"] == 1000


async def test_a_prompt_that_alone_does_not_fit_is_refused_and_counts_nothing(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([Limit("request", 5, "minute"), Limit("token", 100, "minute")])
    assert not (await limiter.admit("alice", 101, max_tokens=10)).allowed
    assert not (await limiter.admit("alice", 100, max_tokens=10)).allowed  # no room for one answer token
    fits = await limiter.admit("alice", 99, max_tokens=10)
    assert fits.allowed and fits.max_tokens == 1
    assert (await limiter.user_stats("alice"))["usage"] == {"5-per-60": 1, "100-tokens-per-60": 100}


async def test_concurrent_admissions_never_reserve_more_than_the_limit(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([TOKENS])
    admissions = await asyncio.gather(*(limiter.admit("alice", 10, max_tokens=200) for _ in range(50)))
    allowed = [a for a in admissions if a.allowed]
    assert sum(a.reserved_tokens for a in allowed) == 1000
    assert sorted(a.max_tokens for a in allowed) == [150] + [200] * 4  # 4 x (10 + 200), then 10 + 150
    await asyncio.gather(*(limiter.settle(a, a.reserved_tokens // 2) for a in allowed))
    assert await figures(limiter, "alice") == (500, 0)


async def test_settling_every_way_a_run_ends_returns_the_reservation(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([TOKENS])
    runs = [await limiter.admit("alice", 20, max_tokens=100) for _ in range(4)]
    assert await figures(limiter, "alice") == (480, 480)
    await limiter.settle(runs[0], 0)  # never started
    await limiter.settle(runs[1], 20 + 7)  # cancelled after 7 tokens
    await limiter.settle(runs[2], 20 + 100)  # ran to its cap
    await limiter.settle(runs[3], 20 + 103)  # went one chunk past it
    await limiter.settle(runs[3], 999)  # a second settle changes nothing
    assert await figures(limiter, "alice") == (27 + 120 + 123, 0)


async def test_a_concurrency_limit_refuses_the_next_run_of_that_user_only(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([Limit("request", 100, "minute")], concurrency_limit=2)
    first, second = await limiter.admit("alice"), await limiter.admit("alice")
    assert first.allowed and second.allowed
    refused = await limiter.admit("alice")
    assert not refused.allowed and refused.too_many_concurrent
    assert (await limiter.user_stats("alice"))["usage"]["100-per-60"] == 2  # the refusal counted nothing
    assert (await limiter.admit("bob")).allowed
    assert (await limiter.user_stats("alice"))["concurrency"] == {"limit": 2, "in_flight": 2}
    await limiter.settle(first, 0)
    assert (await limiter.admit("alice")).allowed
    assert (await limiter.user_stats("alice"))["concurrency"]["in_flight"] == 2


async def test_exactly_the_concurrency_limit_passes_a_burst(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([], concurrency_limit=3)
    admissions = await asyncio.gather(*(limiter.admit("alice") for _ in range(40)))
    assert sum(a.allowed for a in admissions) == 3
    assert sum(a.too_many_concurrent for a in admissions) == 37


async def test_slots_of_a_process_that_died_free_themselves(
    make_limiter: LimiterFactory, clock: FakeClock, store_kind: str
) -> None:
    if store_kind == "memory":
        pytest.skip("one process: its slots die with it")
    dead = make_limiter([], concurrency_limit=1)
    assert (await dead.admit("alice")).allowed  # and this process never settles
    alive = make_limiter([], concurrency_limit=1)
    assert (await alive.admit("alice")).too_many_concurrent
    clock.advance(59)  # a slot not refreshed expires within 60 s
    assert (await alive.admit("alice")).allowed
