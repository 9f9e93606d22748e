"""RateLimiter behaviour: one suite, run on the memory store and on the real Redis store."""
from __future__ import annotations

import asyncio
import math

import pytest

from monoai_tornado.errors import LimiterUnavailable
from monoai_tornado.ratelimit import Admission, Limit, LimitState, MemoryStore, RateLimiter, StoreUnavailable
from tests.support.ratelimit_fixtures import (  # noqa: F401  (fixtures)
    T0, FakeClock, LimiterFactory, clock, make_limiter, redis_prefix, store_kind,
)

PER_MINUTE = Limit("request", 3, "minute")


async def usage(limiter: RateLimiter, user: str) -> dict[str, int]:
    return (await limiter.user_stats(user))["usage"]


async def test_n_plus_first_request_refused_while_another_user_passes(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([PER_MINUTE])
    for expected_remaining in (2, 1, 0):
        admission = await limiter.admit("alice")
        assert admission.allowed and admission.retry_after == 0 and not admission.degraded
        assert admission.states[0].remaining == expected_remaining
    refused = await limiter.admit("alice")
    assert not refused.allowed
    assert refused.states[0].used == 3 and refused.states[0].remaining == 0
    assert refused.retry_after == 60  # the clock is 0.25 s into the minute: ceil(59.75)
    assert (await limiter.admit("bob")).allowed


async def test_refused_request_counts_nothing(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([PER_MINUTE, Limit("token", 1000, "hour")])
    for _ in range(3):
        assert (await limiter.admit("alice", 10)).allowed
    before = await usage(limiter, "alice")
    for _ in range(5):
        assert not (await limiter.admit("alice", 10)).allowed
    assert await usage(limiter, "alice") == before == {"3-per-60": 3, "1000-tokens-per-3600": 30}
    assert (await limiter.stats())["totals"] == {"requests": 3, "tokens": 30}


async def test_window_resets_at_the_epoch_aligned_boundary(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    limiter = make_limiter([PER_MINUTE])
    clock.now = T0 + 59.5  # half a second before the minute ends
    for _ in range(3):
        assert (await limiter.admit("alice")).allowed
    refused = await limiter.admit("alice")
    assert not refused.allowed and refused.retry_after == 1
    assert refused.states[0].reset_in == pytest.approx(0.5)
    clock.advance(0.5)  # the next window starts exactly now
    admission = await limiter.admit("alice")
    assert admission.allowed and admission.states[0].used == 1
    assert admission.states[0].reset_in == pytest.approx(60)


async def test_windows_of_several_units_align_to_the_epoch(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    limiter = make_limiter([Limit("request", 1, "second", 30), Limit("request", 5, "hour", 2)])
    clock.now = T0 + 7200 + 29.9
    admission = await limiter.admit("u")
    assert [round(s.reset_in, 1) for s in admission.states] == [0.1, 7170.1]
    clock.advance(0.1)
    assert (await limiter.admit("u")).allowed  # new 30 s window; 2 of 5 in the 2-hour one


async def test_token_limit_refuses_when_used_plus_prompt_passes_it(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([Limit("token", 100, "minute")])
    first = await limiter.admit("alice", 60)
    assert first.allowed and first.reserved_tokens == 60 and first.states[0].used == 60
    refused = await limiter.admit("alice", 41)
    assert not refused.allowed and refused.reserved_tokens == 0 and refused.retry_after == 60
    exact = await limiter.admit("alice", 40)
    assert exact.allowed and exact.states[0].remaining == 0
    assert not (await limiter.admit("alice", 1)).allowed
    assert (await limiter.admit("alice", 0)).allowed  # used + 0 does not pass the limit
    assert not (await limiter.admit("bob", 101)).allowed  # a prompt larger than the limit never fits
    assert await usage(limiter, "alice") == {"100-tokens-per-60": 100}


async def test_settle_corrects_the_reservation_up_and_down(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([Limit("request", 10, "minute"), Limit("token", 1000, "hour")])
    tokens = "1000-tokens-per-3600"
    up = await limiter.admit("alice", 30)
    await limiter.settle(up, 150)  # 30 prompt + 120 completion
    assert (await usage(limiter, "alice"))[tokens] == 150
    down = await limiter.admit("alice", 200)
    assert (await usage(limiter, "alice"))[tokens] == 350
    await limiter.settle(down, 50)  # cancelled early: only 50 used
    assert (await usage(limiter, "alice"))[tokens] == 200
    await limiter.settle(down, 999)  # settling twice changes nothing
    assert (await usage(limiter, "alice"))[tokens] == 200
    assert (await limiter.stats())["totals"] == {"requests": 2, "tokens": 200}


async def test_settle_never_goes_below_zero_and_ignores_refusals(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([Limit("token", 100, "minute")])
    admission = await limiter.admit("alice", 80)
    await limiter.settle(admission, 0)
    assert await usage(limiter, "alice") == {"100-tokens-per-60": 0}
    big = await limiter.admit("alice", 100)
    refused = await limiter.admit("alice", 1)
    await limiter.settle(refused, 500)
    assert await usage(limiter, "alice") == {"100-tokens-per-60": 100}
    await limiter.settle(big, 100)  # no change
    assert (await limiter.stats())["totals"]["tokens"] == 100


async def test_settle_after_the_window_ended_does_not_charge_the_next(
    make_limiter: LimiterFactory, clock: FakeClock
) -> None:
    limiter = make_limiter([Limit("token", 100, "minute")])
    admission = await limiter.admit("alice", 10)
    clock.advance(60)
    assert (await limiter.admit("alice", 5)).allowed
    await limiter.settle(admission, 90)
    assert await usage(limiter, "alice") == {"100-tokens-per-60": 5}


async def test_200_concurrent_admissions_pass_exactly_the_limit(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([Limit("request", 50, "minute")])
    results = await asyncio.gather(*(limiter.admit("alice") for _ in range(200)))
    assert sum(a.allowed for a in results) == 50
    assert await usage(limiter, "alice") == {"50-per-60": 50}
    assert sorted(a.states[0].used for a in results if a.allowed) == list(range(1, 51))


async def test_concurrent_prompts_cannot_slip_under_a_token_limit(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([Limit("token", 100, "minute")])
    one_fits = await asyncio.gather(*(limiter.admit("alice", 60) for _ in range(50)))
    assert sum(a.allowed for a in one_fits) == 1
    three_fit = await asyncio.gather(*(limiter.admit("bob", 30) for _ in range(50)))
    assert sum(a.allowed for a in three_fit) == 3
    assert (await limiter.stats())["totals"]["tokens"] == 60 + 90


async def test_limiters_sharing_a_store_share_one_budget(make_limiter: LimiterFactory) -> None:
    limits = [Limit("request", 10, "minute")]
    first = make_limiter(limits)
    second = make_limiter(limits, shared=True)
    results = await asyncio.gather(*(lim.admit("alice") for lim in (first, second) for _ in range(20)))
    assert sum(a.allowed for a in results) == 10
    assert (await second.stats())["totals"]["requests"] == 10


async def test_several_limits_at_once(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    limiter = make_limiter([Limit("request", 2, "second"), Limit("request", 3, "minute"),
                            Limit("token", 100, "hour")])
    assert [(await limiter.admit("u", 10)).allowed for _ in range(3)] == [True, True, False]
    refused = await limiter.admit("u", 10)
    assert refused.retry_after == 1  # only the per-second window is exhausted
    clock.advance(1)
    assert (await limiter.admit("u", 10)).allowed
    clock.advance(1)
    refused = await limiter.admit("u", 10)
    assert not refused.allowed and refused.retry_after == 58  # the minute now, at T0 + 2.25
    assert [s.used for s in refused.states] == [0, 3, 30]
    clock.advance(60)
    assert not (await limiter.admit("u", 71)).allowed  # tokens: 30 + 71 > 100
    admission = await limiter.admit("u", 70)
    assert admission.allowed and [s.remaining for s in admission.states] == [1, 2, 0]


async def test_retry_after_is_the_latest_exhausted_window(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([Limit("request", 1, "minute"), Limit("token", 10, "hour")])
    assert (await limiter.admit("u", 10)).allowed
    refused = await limiter.admit("u", 1)
    assert refused.retry_after == math.ceil(3600 - 0.25)


async def test_user_stats_figures(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    limiter = make_limiter([Limit("request", 5, "minute"), Limit("token", 500, "hour")])
    for prompt in (10, 20):
        await limiter.settle(await limiter.admit("alice", prompt), prompt * 3)
    clock.advance(10)
    stats = await limiter.user_stats("alice")
    assert stats == {
        "user_id": "alice",
        "usage": {"5-per-60": 2, "500-tokens-per-3600": 90},
        "remaining": {"5-per-60": 3, "500-tokens-per-3600": 410},
        "reset_in": {"5-per-60": pytest.approx(49.75), "500-tokens-per-3600": pytest.approx(3589.75)},
        "reserved": {"5-per-60": 0, "500-tokens-per-3600": 0},
    }
    assert (await limiter.user_stats("nobody"))["usage"] == {"5-per-60": 0, "500-tokens-per-3600": 0}


async def test_stats_figures_match_what_was_sent(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    limits = [Limit("request", 100, "minute"), Limit("request", 1000, "hour"), Limit("token", 10**6, "day")]
    limiter = make_limiter(limits)
    sent = {"alice": 3, "bob": 5, "carol": 1}
    for user, count in sent.items():
        for _ in range(count):
            await limiter.settle(await limiter.admit(user, 7), 10)
    stats = await limiter.stats()
    assert stats["limits"] == [limit.to_dict() for limit in limits]
    assert stats["active_users"] == 3
    assert stats["totals"] == {"requests": 9, "tokens": 90}
    assert stats["windows"]["100-per-60"] == {"used": 9, "reserved": 0, "users": 3, "reset_in": pytest.approx(59.75)}
    clock.advance(60)  # a new minute; the hour and the day go on
    await limiter.admit("dave", 1)
    stats = await limiter.stats()
    assert stats["windows"]["100-per-60"]["used"] == 1
    assert stats["active_users"] == 4 and stats["totals"] == {"requests": 10, "tokens": 91}
    clock.advance(86400)
    assert (await limiter.stats())["active_users"] == 0


async def test_active_users_with_windows_that_do_not_nest(make_limiter: LimiterFactory, clock: FakeClock) -> None:
    limiter = make_limiter([Limit("request", 10, "second", 7), Limit("request", 10, "second", 5)])
    boundary = math.ceil((T0 + 6) / 7) * 7  # a 7 s window ends inside the 5 s window [T0+5, T0+10)
    assert T0 + 6 <= boundary < T0 + 9
    clock.now = boundary - 0.5
    await limiter.admit("a")
    clock.now = boundary + 0.5  # a new 7 s window, the same 5 s one: "a" is counted only there
    await limiter.admit("b")
    stats = await limiter.stats()
    assert stats["active_users"] == 2
    assert stats["windows"]["10-per-7"]["users"] == 1 and stats["windows"]["10-per-5"]["users"] == 2


async def test_admission_shape(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter([PER_MINUTE])
    admission = await limiter.admit("alice", 12)
    assert isinstance(admission, Admission) and admission.user == "alice"
    assert admission.states == [LimitState(PER_MINUTE, 1, 2, pytest.approx(59.75))]
    assert limiter.limits == [PER_MINUTE]
    with pytest.raises(ValueError):
        await limiter.admit("alice", -1)


def test_limit_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        RateLimiter([Limit("request", 1, "minute"), Limit("request", 1, "minute")])
    with pytest.raises(TypeError):
        RateLimiter(["5/minute"])  # type: ignore[list-item]


async def test_default_store_is_memory() -> None:
    limiter = RateLimiter([PER_MINUTE])
    assert isinstance(limiter.store, MemoryStore)
    assert (await limiter.admit("u")).allowed


async def test_memory_drops_windows_that_have_passed(clock: FakeClock) -> None:
    store = MemoryStore()
    limiter = RateLimiter([Limit("request", 5, "minute"), Limit("token", 100, "minute", 2)], store, clock=clock)
    for i in range(100):
        await limiter.admit(f"user-{i}", 1)
    assert store.size() == 200
    clock.advance(60)
    await limiter.admit("late", 1)
    assert store.size() == 1 + 101  # the minute's counters are gone; the 2-minute ones stay
    clock.advance(60)
    assert (await limiter.stats())["active_users"] == 0
    assert store.size() == 0


class FailingStore(MemoryStore):
    """A store that is down until ``up`` is set (for the limiter's outage handling)."""

    admit_now = None  # type: ignore[assignment]  # take the awaited path

    def __init__(self) -> None:
        super().__init__()
        self.up = False

    async def admit(self, user, limits, starts, tokens, now, cap=0, slot=None):  # type: ignore[no-untyped-def]
        if not self.up:
            raise StoreUnavailable("down")
        return MemoryStore.admit_now(self, user, limits, starts, tokens, cap, slot)


async def test_store_outage_fails_closed_or_open_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="monoai_tornado.ratelimit")
    store = FailingStore()
    closed = RateLimiter([PER_MINUTE], store)
    for _ in range(5):
        with pytest.raises(LimiterUnavailable) as info:
            await closed.admit("u")
        assert info.value.status == 503 and info.value.code == "limiter_unavailable"
    opened = RateLimiter([PER_MINUTE], store, fail_open=True)
    degraded = await opened.admit("u", 5)
    assert degraded.allowed and degraded.degraded and degraded.states == [] and degraded.reserved_tokens == 0
    await opened.settle(degraded, 100)
    store.up = True
    assert (await closed.admit("u")).allowed and (await opened.admit("u")).allowed
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "monoai_tornado.ratelimit"]
    assert [level for level, _ in messages] == ["WARNING", "WARNING", "INFO", "INFO"]  # one per limiter
