"""Fixtures shared by the rate-limit tests: a fake clock, both stores, a private Redis server.

Import the fixtures a test module uses (``from tests.support.ratelimit_fixtures import clock, ...``).
Redis tests run against the real server at ``$MONOAI_TEST_REDIS_URL`` (default
127.0.0.1:6379/0), each on its own key prefix whose keys are deleted afterwards. They are
skipped when Redis is unreachable, except under CI (``CI`` set), where that is a failure.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest
import redis

from monoai_tornado.ratelimit import Limit, MemoryStore, RateLimiter, RedisStore
from tests.support.ci import skip_or_fail
from tests.support.processes import free_port

REDIS_URL = os.environ.get("MONOAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: A whole day since the epoch: every test window starts aligned at T0.
T0 = 86400 * 19676.0


def redis_reachable(url: str = REDIS_URL) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def need_redis(url: str = REDIS_URL) -> None:
    """Skip (locally) or fail (under CI) when the Redis server cannot be reached."""
    if not redis_reachable(url):
        skip_or_fail(f"Redis is not reachable at {url}", "CI must run the Redis tests; start redis-server")


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class FakeClock:
    """A clock the test moves by hand: ``clock.advance(61)`` instead of sleeping."""

    def __init__(self, now: float = T0 + 0.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    prefix = f"test:ratelimit:{uuid.uuid4().hex}:"
    yield prefix
    if redis_reachable():
        delete_prefix(REDIS_URL, prefix)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.redis)])
def store_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        need_redis()
    return str(request.param)


LimiterFactory = Callable[..., RateLimiter]


@pytest.fixture
def make_limiter(
    store_kind: str, store_url: str, clock: FakeClock, redis_prefix: str, io_loop: Any
) -> Iterator[LimiterFactory]:
    """``make_limiter(limits, **kwargs)``: a limiter on the store under test and the fake clock.

    With Redis (single or cluster), every limiter made in one test shares the test's prefix,
    like processes sharing one Redis; with memory, ``shared=True`` reuses the previous limiter's store.
    """
    made: list[RateLimiter] = []

    def make(limits: Sequence[Limit], *, shared: bool = False, **kwargs: Any) -> RateLimiter:
        kwargs.setdefault("clock", clock)
        if store_url:
            store: Any = RedisStore(store_url, prefix=redis_prefix)
        elif shared and made:
            store = made[-1].store
        else:
            store = MemoryStore()
        limiter = RateLimiter(limits, store, **kwargs)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        io_loop.run_sync(limiter.aclose)


class RedisServer:
    """A redis-server owned by one test, on a free port, that it can stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server not installed"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not redis_reachable(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis server (skipped locally, failed under CI, without redis-server)."""
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed", "CI must run the Redis tests")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
