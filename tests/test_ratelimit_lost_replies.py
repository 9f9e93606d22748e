"""Replies lost between the Redis store and Redis, for real: a TCP proxy in the test process
loses Redis's next replies (keeping the connection silent until the client times out, or
closing it). Admissions and settlements carry an id, so a retry counts once, and an admission
that never gets its reply is released: the user's counters show exactly what was used."""
from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from monoai_tornado.errors import LimiterUnavailable
from monoai_tornado.ratelimit import Limit, RateLimiter, RedisStore
from tests.support.ratelimit_fixtures import (  # noqa: F401  (fixtures)
    REDIS_URL, FakeClock, clock, need_redis, redis_prefix,
)

pytestmark = pytest.mark.redis

LIMITS = [Limit("request", 10, "minute"), Limit("token", 1000, "minute")]
REQUESTS, TOKENS = LIMITS[0].name, LIMITS[1].name


class LossyProxy:
    """Forwards TCP to Redis; loses the next ``lose`` replies from Redis: ``hang`` drops them
    and keeps the connection silent (the client times out), ``close`` closes the connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 6379, parts.path
        self.lose = 0
        self.lost = 0
        self.mode = "hang"
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}{self.path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self._writers += [writer, up_writer]

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, replies: bool) -> None:
            while data := await source.read(65536):
                if replies and self.lose > 0:
                    self.lose -= 1
                    self.lost += 1
                    if self.mode == "close":
                        break
                    continue
                sink.write(data)
                await sink.drain()

        try:
            await asyncio.wait([asyncio.ensure_future(pump(reader, up_writer, False)),
                                asyncio.ensure_future(pump(up_reader, writer, True))],
                               return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            up_writer.close()

    async def aclose(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()


@pytest.fixture
def proxy() -> LossyProxy:
    """A proxy to the test Redis; each test closes it (with its limiter)."""
    need_redis()
    return LossyProxy(REDIS_URL)


async def figures(prefix: str, clock: FakeClock, user: str) -> tuple[dict[str, int], dict[str, int]]:
    """``user``'s usage and reservations, read from Redis directly (not through the proxy)."""
    direct = RateLimiter(LIMITS, RedisStore(REDIS_URL, prefix=prefix), clock=clock)
    try:
        stats = await direct.user_stats(user)
        return stats["usage"], stats["reserved"]
    finally:
        await direct.aclose()


async def warmed_limiter(proxy: LossyProxy, prefix: str, clock: FakeClock) -> RateLimiter:
    """A limiter whose store talks to Redis through ``proxy``, its scripts loaded and its
    connection made (so the next reply lost is an admission's or a settlement's)."""
    limiter = RateLimiter(LIMITS, RedisStore(await proxy.start(), prefix=prefix, socket_timeout=0.5), clock=clock)
    await limiter.settle(await limiter.admit("warm-up", 1, max_tokens=1), 1)
    return limiter


@pytest.mark.slow  # waits for a client timeout
async def test_an_admission_whose_reply_times_out_counts_once(
    proxy: LossyProxy, redis_prefix: str, clock: FakeClock
) -> None:
    limiter = await warmed_limiter(proxy, redis_prefix, clock)
    try:
        proxy.lose = 1
        admission = await limiter.admit("alice", 5, max_tokens=10)
        assert proxy.lost == 1 and admission.allowed and admission.reserved_tokens == 15
        await limiter.settle(admission, 12)
    finally:
        await limiter.aclose()
        await proxy.aclose()
    assert await figures(redis_prefix, clock, "alice") == ({REQUESTS: 1, TOKENS: 12}, {REQUESTS: 0, TOKENS: 0})


async def test_a_settlement_whose_connection_drops_counts_once(
    proxy: LossyProxy, redis_prefix: str, clock: FakeClock
) -> None:
    limiter = await warmed_limiter(proxy, redis_prefix, clock)
    try:
        admission = await limiter.admit("bob", 5, max_tokens=10)
        proxy.mode, proxy.lose = "close", 1
        await limiter.settle(admission, 12)  # 15 reserved, 12 used: -3 once, not twice
        assert proxy.lost == 1 and limiter.available
    finally:
        await limiter.aclose()
        await proxy.aclose()
    assert await figures(redis_prefix, clock, "bob") == ({REQUESTS: 1, TOKENS: 12}, {REQUESTS: 0, TOKENS: 0})


@pytest.mark.slow  # waits for two client timeouts
async def test_an_admission_that_never_gets_its_reply_is_released(
    proxy: LossyProxy, redis_prefix: str, clock: FakeClock
) -> None:
    """Both replies lost: the client gets 503 limiter_unavailable, and what Redis counted for
    the admission (the request, 15 tokens reserved) is taken back: nothing stays reserved."""
    limiter = await warmed_limiter(proxy, redis_prefix, clock)
    try:
        proxy.lose = 2
        with pytest.raises(LimiterUnavailable):
            await limiter.admit("carol", 5, max_tokens=10)
        assert proxy.lost == 2
    finally:
        await limiter.aclose()  # sends the release first
        await proxy.aclose()
    assert await figures(redis_prefix, clock, "carol") == ({REQUESTS: 0, TOKENS: 0}, {REQUESTS: 0, TOKENS: 0})
