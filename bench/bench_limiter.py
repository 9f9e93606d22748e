"""Admissions per second of RateLimiter on each store, one core, one event loop.

    python bench/bench_limiter.py [--memory N] [--redis N] [--redis-url URL]
                                  [--cluster-url redis+cluster://host:port,... | --start-cluster]

A typical configuration: one request limit and one token limit. Memory: admissions in a
tight loop over 1,000 users; Redis: sequential admissions (one round trip each) and then the
same number with 64 in flight at once, beside redis-py's bare PING rate (the client's own
ceiling); then the same on a Redis Cluster (``--cluster-url``, or ``--start-cluster``: a local
three-master cluster from tests/support/redis_cluster.py), and the memory one user's keys take
(MEMORY USAGE). Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from monoai_tornado.ratelimit import Limit, MemoryStore, RateLimiter  # noqa: E402

LIMITS = [Limit("request", 10**9, "minute"), Limit("token", 10**12, "hour")]
USERS = [f"user-{i}" for i in range(1000)]


async def bench_memory(count: int) -> float:
    limiter = RateLimiter(LIMITS, MemoryStore())
    admit = limiter.admit
    users = USERS * (count // len(USERS) + 1)
    start = time.perf_counter()
    for user in users[:count]:
        await admit(user, 20)
    return count / (time.perf_counter() - start)


async def bench_redis(url: str, count: int, concurrency: int) -> float:
    from monoai_tornado.ratelimit import RedisStore

    store = RedisStore(url, prefix=f"bench:{uuid.uuid4().hex}:")
    limiter = RateLimiter(LIMITS, store)
    try:
        await limiter.admit("warm-up", 1)
        users = USERS * (count // len(USERS) + 1)
        start = time.perf_counter()
        if concurrency == 1:
            for user in users[:count]:
                await limiter.admit(user, 20)
        else:
            async def worker(part: list[str]) -> None:
                for user in part:
                    await limiter.admit(user, 20)

            parts = [users[i:count:concurrency] for i in range(concurrency)]
            await asyncio.gather(*(worker(part) for part in parts))
        return count / (time.perf_counter() - start)
    finally:
        await store.delete_all()
        await limiter.aclose()


async def user_bytes(url: str) -> int:
    """Bytes of one user's keys (both limits' windows), by MEMORY USAGE."""
    from monoai_tornado.ratelimit import RedisStore

    store = RedisStore(url, prefix=f"bench:{uuid.uuid4().hex}:")
    limiter = RateLimiter(LIMITS, store)
    try:
        await limiter.settle(await limiter.admit("user-000001", 20), 30)
        keys = [key async for key in store.client.scan_iter(match=store.prefix + "*")]
        return sum([await store.client.memory_usage(key) for key in keys])
    finally:
        await store.delete_all()
        await limiter.aclose()


async def bench_ping(url: str, count: int) -> float:
    """redis-py's own ceiling here: sequential PINGs, one round trip each."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
        start = time.perf_counter()
        for _ in range(count):
            await client.ping()
        return count / (time.perf_counter() - start)
    finally:
        await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", type=int, default=200_000, help="memory admissions")
    parser.add_argument("--redis", type=int, default=20_000, help="Redis admissions (0: skip)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--cluster-url", help="a Redis Cluster, redis+cluster://host:port[,host:port]")
    parser.add_argument("--start-cluster", action="store_true", help="start a local three-master cluster")
    args = parser.parse_args()
    print(f"MemoryStore: {await bench_memory(args.memory):>10,.0f} admissions/s ({args.memory:,} admissions)")
    if args.redis:
        ping = await bench_ping(args.redis_url, args.redis // 4)
        print(f"redis-py PING: {ping:>8,.0f} round trips/s (the client's ceiling, for comparison)")
        for concurrency in (1, 64):
            rate = await bench_redis(args.redis_url, args.redis, concurrency)
            print(f"RedisStore:  {rate:>10,.0f} admissions/s ({args.redis:,} admissions, {concurrency} in flight)")
        print(f"one user's keys (2 limits): {await user_bytes(args.redis_url)} bytes (MEMORY USAGE)")
    cluster = None
    if args.start_cluster:
        from tests.support.redis_cluster import start_cluster

        cluster = start_cluster()
        args.cluster_url = cluster.url
    try:
        if args.cluster_url and args.redis:
            for concurrency in (1, 64):
                rate = await bench_redis(args.cluster_url, args.redis, concurrency)
                print(f"RedisStore on a cluster: {rate:>10,.0f} admissions/s ({args.redis:,} admissions, "
                      f"{concurrency} in flight)")
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    asyncio.run(main())
