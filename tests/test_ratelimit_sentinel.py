"""``--redis-url redis+sentinel://host:port/name``: the limiter on the master a real Sentinel names."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from monoai_tornado.ratelimit import Limit, RateLimiter, RedisStore
from tests.support.processes import free_port
from tests.support.ratelimit_fixtures import RedisServer, redis_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.redis


@pytest.fixture
def sentinel_url(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    """A Sentinel (redis-server --sentinel) watching the test's own Redis as ``limits``."""
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                      f"sentinel monitor limits 127.0.0.1 {redis_server.port} 1\n")
    binary = shutil.which("redis-server")
    assert binary
    process = subprocess.Popen([binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:  # bounded: until the Sentinel names the master
            try:
                if client.execute_command("SENTINEL", "get-master-addr-by-name", "limits"):
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "the Sentinel did not start"
            time.sleep(0.05)
        client.close()
        yield f"redis+sentinel://127.0.0.1:{port}/limits"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_limiter_through_a_sentinel(sentinel_url: str, redis_server: RedisServer) -> None:  # noqa: F811
    limiter = RateLimiter([Limit("request", 3, "minute")], RedisStore(sentinel_url, prefix="sentinel-test:"))
    try:
        results = [(await limiter.admit("alice", 1)).allowed for _ in range(4)]
        assert results == [True, True, True, False]
        assert (await limiter.admit("bob", 1)).allowed
    finally:
        await limiter.aclose()
    counted = redis_server.client()
    try:  # the counts are on the master the Sentinel named
        assert any(counted.scan_iter(match="sentinel-test:{alice}*"))
    finally:
        counted.close()
