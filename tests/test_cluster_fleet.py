"""Server processes on a real three-master Redis Cluster: one budget, users spread over the
nodes, a node lost mid-load answers 503 (or passes, fail open) and the fleet recovers."""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Callable, Iterator

import pytest
import redis

from tests.support.http import Fetch, json_of
from tests.support.processes import Servers
from tests.support.redis_cluster import LocalCluster, need_cluster, start_cluster

pytestmark = [pytest.mark.redis, pytest.mark.process, pytest.mark.slow]

N = 20
Start = Callable[..., str]


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of this test's own (it kills a node)."""
    need_cluster()
    cluster = start_cluster()
    yield cluster
    cluster.stop()


def fleet_on(url: str) -> tuple[Servers, str]:
    """Servers on the cluster at ``url``, on a key prefix of their own; and the prefix."""
    prefix = f"monoai-test-{uuid.uuid4().hex[:8]}:"
    return Servers("--no-agents", "--log-level", "warning", "--demo-delay", "0", "--redis-url", url,
                   "--redis-prefix", prefix), prefix


@pytest.fixture
def fleet(redis_cluster: LocalCluster) -> Iterator[tuple[Start, str]]:
    start, prefix = fleet_on(redis_cluster.url)
    yield start, prefix
    start.stop_all()


def keys_per_node(cluster: LocalCluster, prefix: str) -> dict[int, list[bytes]]:
    found = {}
    for port in cluster.ports:
        client = redis.Redis(port=port, socket_timeout=5)
        try:
            found[port] = list(client.scan_iter(match=prefix + "*", count=1000))
        finally:
            client.close()
    return found


async def ask(fetch: Fetch, base: str, user: str) -> Any:
    return await fetch(base + "/model", "POST", {"prompt": "p", "user_id": user})


async def test_two_servers_on_the_cluster_pass_exactly_n(fleet: tuple[Start, str], fetch: Fetch) -> None:
    start, _ = fleet
    servers = [start("--limit", f"{N}/hour"), start("--limit", f"{N}/hour")]
    user = f"fleet-{uuid.uuid4().hex[:6]}"
    responses = await asyncio.gather(*(ask(fetch, servers[i % 2], user) for i in range(4 * N)))
    codes = [r.code for r in responses]
    assert codes.count(200) == N and codes.count(429) == 3 * N
    for base in servers:  # both see the fleet's figures, summed over the nodes
        assert json_of(await fetch(base + f"/rate-limit/stats/{user}"))["usage"][f"{N}-per-3600"] == N
        assert json_of(await fetch(base + "/rate-limit/stats"))["totals"]["requests"] == N


async def test_users_keys_spread_over_the_nodes(
    fleet: tuple[Start, str], redis_cluster: LocalCluster, fetch: Fetch
) -> None:
    start, prefix = fleet
    base = start("--limit", f"{N}/minute", "--token-limit", "100000/hour")
    users = [f"spread-{i}-{{x}}" for i in range(24)]  # braces in ids stay inside their own tag
    assert {r.code for r in await asyncio.gather(*(ask(fetch, base, user) for user in users))} == {200}
    found = keys_per_node(redis_cluster, prefix)
    assert sum(1 for keys in found.values() if keys) > 1, found
    for user in users:  # each user's keys (two windows) live together on one node
        escaped = user.replace("{", "%7B").replace("}", "%7D").encode()
        holders = [port for port, keys in found.items() if any(escaped in key for key in keys)]
        assert len(holders) == 1, (user, holders)
    stats = json_of(await fetch(base + "/rate-limit/stats"))
    assert stats["active_users"] == len(users) and stats["totals"]["requests"] == len(users)


async def load(fetch: Fetch, base: str, tag: str) -> list[Any]:
    return list(await asyncio.gather(*(ask(fetch, base, f"{tag}-{i}") for i in range(12))))


async def test_node_lost_mid_load_503_then_recovers(own_cluster: LocalCluster, fetch: Fetch) -> None:
    """Two servers: one fails closed (503 for users on the lost node), one fails open."""
    start, _ = fleet_on(own_cluster.url)
    try:
        closed, open_ = start("--limit", "1000/minute"), start("--limit", "1000/minute", "--limiter-fail-open")
        for base in (closed, open_):
            assert {r.code for r in await load(fetch, base, "before")} == {200}
        own_cluster.stop_node(own_cluster.ports[0])
        seen: dict[str, list[Any]] = {closed: [], open_: []}
        for round_ in range(4):
            for base in (closed, open_):
                seen[base] += await load(fetch, base, f"down{round_}")
            await asyncio.sleep(0.5)
        assert {r.code for r in seen[open_]} == {200}  # every request passes, unmetered where need be
        codes = {r.code for r in seen[closed]}
        assert 503 in codes and codes <= {200, 503}, codes  # users on live nodes may still pass
        assert {json_of(r)["code"] for r in seen[closed] if r.code == 503} == {"limiter_unavailable"}
        own_cluster.start_node(own_cluster.ports[0])
        own_cluster.wait_ok()
        deadline = time.monotonic() + 30
        for attempt in range(60):  # bounded: the servers find the node again by themselves
            codes = {r.code for base in (closed, open_) for r in await load(fetch, base, f"after{attempt}")}
            if codes == {200} or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert codes == {200}
        stats = json_of(await fetch(closed + "/rate-limit/stats"))
        assert stats["totals"]["requests"] > 0  # the stats read the recovered cluster again
    finally:
        start.stop_all()
