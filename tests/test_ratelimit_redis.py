"""RedisStore only: one round trip per decision, keys that expire, outages and recovery.

Outage tests own a redis-server on a free port (stopped and started again on that port);
the others use the shared server with a prefix of their own.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from redis.asyncio import Connection

from monoai_tornado.errors import LimiterUnavailable
from monoai_tornado.ratelimit import Limit, RateLimiter, RedisStore
from monoai_tornado.ratelimit.redis_store import ADMISSION_TTL_MS
from tests.support.ratelimit_fixtures import (  # noqa: F401  (fixtures)
    REDIS_URL, FakeClock, RedisServer, clock, need_redis, redis_prefix, redis_server,
)

pytestmark = pytest.mark.redis

LIMITS = [Limit("request", 1000, "minute"), Limit("token", 10**6, "hour")]
LOGGER = "monoai_tornado.ratelimit"


@pytest.fixture
def shared_redis() -> str:
    need_redis()
    return REDIS_URL


def log_levels(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.levelname for record in caplog.records if record.name == LOGGER]


def commands(server: RedisServer) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, without this helper's own connection."""
    client = server.client()
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config", "cmdstat_hello", "cmdstat_client"))
    }


def reset_stats(server: RedisServer) -> None:
    client = server.client()
    try:
        client.config_resetstat()
    finally:
        client.close()


async def admit_until_up(limiter: RateLimiter, seconds: float = 10.0) -> Any:
    """Admit until the store answers again (bounded in time and count)."""
    deadline = time.monotonic() + seconds
    for _ in range(200):
        try:
            return await limiter.admit("back")
        except LimiterUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("store did not come back")


class CountingConnection(Connection):
    """A connection that counts what it sends: one send per round trip (pipelines included)."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        await super().send_packed_command(command, check_health)


async def test_one_round_trip_per_admission(redis_server: RedisServer, redis_prefix: str, clock: FakeClock) -> None:
    store = RedisStore(redis_server.url, prefix=redis_prefix)
    store.client.connection_pool.connection_class = CountingConnection
    limiter = RateLimiter(LIMITS, store, clock=clock)
    try:
        await limiter.admit("warm-up", 1)  # connects and loads the script once
        reset_stats(redis_server)
        CountingConnection.sends = 0
        results = [await limiter.admit(f"user-{i % 3}", 400_000) for i in range(20)]
        assert sum(a.allowed for a in results) == 6  # 2 per user; refusals cost one round trip too
        assert CountingConnection.sends == 20
        executed = commands(redis_server)
        assert executed["evalsha"] == 20  # the script, registered once, run by its digest
        assert not {"eval", "script|load", "ping"} & executed.keys()
        await limiter.settle(results[0], 10)  # first use of each script loads it
        await limiter.stats()
        CountingConnection.sends = 0
        await limiter.settle(results[1], 10)
        await limiter.user_stats("user-0")  # one pipelined round trip of HMGETs
        await limiter.stats()  # no hot total key: one SCAN (few keys here), one pipelined HMGET
        assert CountingConnection.sends == 4
    finally:
        await limiter.aclose()


async def test_concurrent_decisions_share_round_trips_and_stay_exact(
    redis_server: RedisServer, redis_prefix: str, clock: FakeClock
) -> None:
    """100 admissions at once: exactly the limit passes, in far fewer round trips than requests."""
    store = RedisStore(redis_server.url, prefix=redis_prefix)
    store.client.connection_pool.connection_class = CountingConnection
    limiter = RateLimiter([Limit("request", 37, "minute"), Limit("token", 10**6, "hour")], store, clock=clock)
    try:
        await limiter.admit("warm-up", 1)
        CountingConnection.sends = 0
        results = await asyncio.gather(*(limiter.admit("crowd", 10) for _ in range(100)))
        assert sum(a.allowed for a in results) == 37
        assert 1 <= CountingConnection.sends < 100
        admitted = [a for a in results if a.allowed]
        await asyncio.gather(*(limiter.settle(a, 25) for a in admitted))  # settled together too
        usage = (await limiter.user_stats("crowd"))["usage"]
        assert usage == {"37-per-60": 37, "1000000-tokens-per-3600": 37 * 25}
    finally:
        await limiter.aclose()


async def test_keys_expire_with_their_window(shared_redis: str, redis_prefix: str, clock: FakeClock) -> None:
    store = RedisStore(shared_redis, prefix=redis_prefix)
    limiter = RateLimiter(LIMITS, store, clock=clock)
    try:
        clock.advance(30)  # 30.25 s into the minute
        await limiter.settle(await limiter.admit("alice", 10), 50)
        keys = sorted([key.decode() async for key in store.client.scan_iter(match=redis_prefix + "*")])
        records = [key for key in keys if key.startswith(f"{redis_prefix}{{alice}}adm:")]
        assert len(records) == 1 and 0 < await store.client.pttl(records[0]) <= ADMISSION_TTL_MS  # counted once
        keys.remove(records[0])
        assert keys == sorted(
            f"{redis_prefix}{{alice}}l:{limit.name}:{int(clock.now) // limit.window_seconds * limit.window_seconds}"
            for limit in LIMITS
        )  # one hash per user and window, in the user's hash slot; no key shared by all users
        for key in keys:
            ttl = await store.client.pttl(key)
            window = 60_000 if "-per-60:" in key else 3_600_000
            remaining = window - 30_250
            assert remaining - 1000 < ttl <= remaining + 1, key
    finally:
        await limiter.aclose()


async def test_refused_request_writes_nothing(shared_redis: str, redis_prefix: str, clock: FakeClock) -> None:
    store = RedisStore(shared_redis, prefix=redis_prefix)
    limiter = RateLimiter([Limit("request", 5, "minute"), Limit("token", 10, "minute")], store, clock=clock)
    try:
        assert not (await limiter.admit("alice", 11)).allowed
        assert [key async for key in store.client.scan_iter(match=redis_prefix + "*")] == []
        assert (await limiter.stats())["active_users"] == 0
    finally:
        await limiter.aclose()


async def test_stats_are_the_fleets(shared_redis: str, redis_prefix: str, clock: FakeClock) -> None:
    """Two stores on one Redis (two processes): each sees the other's users and totals."""
    one = RateLimiter(LIMITS, RedisStore(shared_redis, prefix=redis_prefix), clock=clock)
    two = RateLimiter(LIMITS, RedisStore(shared_redis, prefix=redis_prefix), clock=clock)
    try:
        await one.admit("alice", 5)
        await two.admit("bob", 7)
        await two.admit("alice", 1)
        for limiter in (one, two):
            stats = await limiter.stats()
            assert stats["active_users"] == 2 and stats["totals"] == {"requests": 3, "tokens": 13}
        assert (await one.user_stats("alice"))["usage"] == {"1000-per-60": 2, "1000000-tokens-per-3600": 6}
    finally:
        await one.aclose()
        await two.aclose()


async def test_outage_fails_closed_logs_once_and_recovers(
    redis_server: RedisServer, redis_prefix: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    limiter = RateLimiter(LIMITS, RedisStore(redis_server.url, prefix=redis_prefix, socket_timeout=0.5), clock=clock)
    try:
        assert (await limiter.admit("alice", 1)).allowed
        redis_server.stop()
        for _ in range(10):
            with pytest.raises(LimiterUnavailable) as info:
                await limiter.admit("alice", 1)
            assert info.value.status == 503 and info.value.code == "limiter_unavailable"
        failures = await asyncio.gather(*(limiter.admit("bob") for _ in range(30)), return_exceptions=True)
        assert all(isinstance(result, LimiterUnavailable) for result in failures)
        with pytest.raises(LimiterUnavailable):
            await limiter.user_stats("alice")
        with pytest.raises(LimiterUnavailable):
            await limiter.stats()
        assert log_levels(caplog) == ["WARNING"]
        redis_server.start()  # same port, empty, no scripts loaded
        admission = await admit_until_up(limiter)
        assert admission.allowed and not admission.degraded and admission.states[0].used == 1
        assert (await limiter.admit("alice", 1)).allowed
        assert log_levels(caplog) == ["WARNING", "INFO"]
    finally:
        await limiter.aclose()


async def test_outage_fails_open_when_asked(
    redis_server: RedisServer, redis_prefix: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    store = RedisStore(redis_server.url, prefix=redis_prefix, socket_timeout=0.5)
    limiter = RateLimiter([Limit("request", 2, "minute")], store, clock=clock, fail_open=True)
    try:
        assert (await limiter.admit("alice")).allowed
        redis_server.stop()
        passed = [await limiter.admit("alice", 5) for _ in range(10)]
        assert all(a.allowed and a.degraded and a.states == [] and a.retry_after == 0 for a in passed)
        await limiter.settle(passed[0], 100)  # nothing to record
        assert log_levels(caplog) == ["WARNING"]
        redis_server.start()
        admission = await admit_until_up(limiter)
        assert not admission.degraded
        assert (await limiter.admit("alice")).allowed  # the restarted Redis starts empty
        assert (await limiter.admit("alice")).allowed
        assert not (await limiter.admit("alice")).allowed  # checked again
        assert log_levels(caplog) == ["WARNING", "INFO"]
    finally:
        await limiter.aclose()


@pytest.mark.slow  # takes a second or more
async def test_a_hung_redis_times_out_to_503(
    redis_server: RedisServer, redis_prefix: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(LIMITS, RedisStore(redis_server.url, prefix=redis_prefix, socket_timeout=0.2), clock=clock)
    try:
        assert (await limiter.admit("alice")).allowed
        client = redis_server.client()
        try:
            client.client_pause(1500)  # every client's commands wait 1.5 s
        finally:
            client.close()
        started = time.monotonic()
        with pytest.raises(LimiterUnavailable):
            await limiter.admit("alice")
        assert time.monotonic() - started < 1.0
        assert (await admit_until_up(limiter)).allowed
    finally:
        await limiter.aclose()


async def test_redis_lost_mid_run(
    redis_server: RedisServer, redis_prefix: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The store goes away between admission and settlement: the run's end must not fail."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    limits = [Limit("request", 10, "minute"), Limit("token", 1000, "minute")]
    limiter = RateLimiter(limits, RedisStore(redis_server.url, prefix=redis_prefix, socket_timeout=0.5), clock=clock)
    try:
        admission = await limiter.admit("alice", 10)
        redis_server.stop()
        await limiter.settle(admission, 300)  # logged as the outage, not raised
        with pytest.raises(LimiterUnavailable):
            await limiter.admit("alice", 10)
        assert log_levels(caplog) == ["WARNING"]
        redis_server.start()
        assert (await admit_until_up(limiter)).allowed
        assert log_levels(caplog) == ["WARNING", "INFO"]
    finally:
        await limiter.aclose()


def test_script_files_ship_with_the_package() -> None:
    from importlib import resources

    names = {path.name for path in resources.files("monoai_tornado.ratelimit").iterdir()}
    assert {"admit.lua", "settle.lua"} <= names


async def test_a_poisoned_call_fails_alone_in_its_batch(shared_redis: str, redis_prefix: str, clock: FakeClock) -> None:
    """A user id Redis cannot encode, admitted in the same loop pass as 20 good ones: the 20 pass."""
    limiter = RateLimiter(LIMITS, RedisStore(shared_redis, prefix=redis_prefix), clock=clock)
    try:
        users = [f"good-{i}" for i in range(10)] + ["\ud800"] + [f"good-{i}" for i in range(10, 20)]
        results = await asyncio.gather(*(limiter.admit(user, 3) for user in users), return_exceptions=True)
        poisoned = results.pop(10)
        assert isinstance(poisoned, ValueError)
        assert all(not isinstance(r, BaseException) and r.allowed for r in results), results
        settled = await asyncio.gather(limiter.settle(results[0], 5), limiter.store.settle(
            "\udfff", LIMITS[1:], [0], 1), return_exceptions=True)
        assert settled[0] is None and isinstance(settled[1], ValueError)
        assert (await limiter.user_stats("good-0"))["usage"] == {"1000-per-60": 1, "1000000-tokens-per-3600": 5}
        assert (await limiter.stats())["active_users"] == 20
    finally:
        await limiter.aclose()


async def test_a_redis_error_fails_its_own_call_only(shared_redis: str, redis_prefix: str, clock: FakeClock) -> None:
    """Not only lost connections: a script's error reply (here WRONGTYPE on a key someone
    overwrote) is 503 limiter_unavailable for the request that met it, never a 500, and the
    other admissions of the same pipelined batch are answered."""
    store = RedisStore(shared_redis, prefix=redis_prefix)
    limiter = RateLimiter(LIMITS, store, clock=clock)
    try:
        await limiter.admit("warm-up", 1)
        start = int(clock.now) // 60 * 60
        await store.client.set(f"{redis_prefix}{{mallory}}l:{LIMITS[0].name}:{start}", "not a hash")
        results = await asyncio.gather(*(limiter.admit(user, 1) for user in ["alice", "mallory", "bob"]),
                                       return_exceptions=True)
        assert isinstance(results[1], LimiterUnavailable) and results[1].code == "limiter_unavailable"
        assert [result.allowed for result in (results[0], results[2])] == [True, True]  # type: ignore[union-attr]
    finally:
        await limiter.aclose()


async def test_a_reply_lost_to_a_timeout_is_released_as_documented(
    redis_server: RedisServer, redis_prefix: str, clock: FakeClock
) -> None:
    """Redis paused (SIGSTOP): the admissions sent meanwhile get 503 (after one retry with the
    same admission id); Redis runs them when it wakes, and their releases, sent when the store
    gave up, take back what they counted. docs/deploy.md says so: nobody passes a limit, and the
    counters run ahead of the admitted requests only when a release cannot reach Redis either."""
    import os
    import signal

    limits = [Limit("request", 5, "minute")]
    limiter = RateLimiter(limits, RedisStore(redis_server.url, prefix=redis_prefix, socket_timeout=0.3), clock=clock)
    assert redis_server.process is not None
    try:
        admitted = sum([(await limiter.admit("paused")).allowed for _ in range(2)])
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            refused = await asyncio.gather(*(limiter.admit("paused") for _ in range(4)), return_exceptions=True)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert all(isinstance(r, LimiterUnavailable) for r in refused)
        await admit_until_up(limiter)  # another user's
    finally:
        await limiter.aclose()  # the releases have been sent (or failed) by now
    limiter = RateLimiter(limits, RedisStore(redis_server.url, prefix=redis_prefix), clock=clock)
    try:
        used = (await limiter.user_stats("paused"))["usage"]["5-per-60"]
        print(f"counted {used} for {admitted} admitted and {len(refused)} refused with 503")
        assert admitted == 2 and admitted <= used <= admitted + len(refused)
        later = [await limiter.admit("paused") for _ in range(5)]
        assert sum(a.allowed for a in later) == 5 - used  # the limit holds: never more than 5 admitted
    finally:
        await limiter.aclose()
