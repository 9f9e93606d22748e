"""Several server processes, one Redis: the whole fleet holds one budget."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.support.http import json_of
from tests.support.ratelimit_fixtures import delete_prefix, need_redis
from tests.support.processes import Servers

pytestmark = [pytest.mark.process, pytest.mark.redis, pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def fleet():
    need_redis(REDIS_URL)
    prefix = f"monoai-test-{uuid.uuid4().hex[:8]}:"
    servers = Servers("--no-agents", "--log-level", "warning", "--demo-delay", "0", "--redis-url", REDIS_URL,
                      "--redis-prefix", prefix)
    yield servers
    servers.stop_all()
    delete_prefix(REDIS_URL, prefix)


N = 20


async def test_two_servers_on_one_redis_pass_exactly_n(fleet, fetch):
    servers = [fleet("--limit", f"{N}/hour"), fleet("--limit", f"{N}/hour")]
    user = f"fleet-{uuid.uuid4().hex[:6]}"
    responses = await asyncio.gather(*(fetch(servers[i % 2] + "/model", "POST", {"prompt": "p", "user_id": user})
                                       for i in range(4 * N)))
    codes = [r.code for r in responses]
    assert codes.count(200) == N and codes.count(429) == 3 * N
    # Both servers report the fleet's figures, not their own.
    for base in servers:
        assert json_of(await fetch(base + f"/rate-limit/stats/{user}"))["usage"][f"{N}-per-3600"] == N
        assert json_of(await fetch(base + "/rate-limit/stats"))["totals"]["requests"] == N


async def test_processes_option_shares_one_budget(fleet, fetch):
    base = fleet("--processes", "2", "--limit", f"{N}/hour")
    user = f"procs-{uuid.uuid4().hex[:6]}"
    responses = await asyncio.gather(*(fetch(base + "/model", "POST", {"prompt": "p", "user_id": user})
                                       for _ in range(4 * N)))
    codes = [r.code for r in responses]
    assert codes.count(200) == N and codes.count(429) == 3 * N
