"""Keys in Redis (``--keys-redis``): one set of keys for every process and machine.

Three keys under the deployment's prefix, sharing one hash tag so that a Redis Cluster keeps
them in one slot::

    {prefix}{apikeys}:records      hash  SHA-256 of the key -> JSON record (no key)
    {prefix}{apikeys}:ids          hash  key id -> SHA-256
    {prefix}{apikeys}:version      integer, incremented by every add and revoke

The key cache reads ``version`` about once a second, so lookups of known keys cost no round
trip and a revocation is seen by every process within that second.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Hashable

from ..errors import KeyStoreUnavailable
from .records import ApiKey

__all__ = ["RedisKeyStore"]


class RedisKeyStore:
    """Key records in the Redis at ``url`` under ``prefix`` (the limiter's, by default).

    >>> store = RedisKeyStore("redis://127.0.0.1:6379/0", prefix="monoai:")
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "monoai:", *,
                 socket_timeout: float = 1.0) -> None:
        import redis.asyncio as aioredis  # only those who keep keys in Redis need redis

        self.url = url
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(url, socket_timeout=socket_timeout,
                                              socket_connect_timeout=socket_timeout)
        head = f"{prefix}{{apikeys}}:"
        self._records, self._ids, self._version = head + "records", head + "ids", head + "version"

    async def _call(self, coroutine: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            return await coroutine
        except (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError) as exc:
            raise KeyStoreUnavailable(f"key store at {self.url} unavailable: {type(exc).__name__}") from exc

    async def find(self, key_hash: str) -> ApiKey | None:
        raw = await self._call(self._redis.hget(self._records, key_hash))
        return None if raw is None else ApiKey.from_json(json.loads(raw))

    async def _put(self, record: ApiKey, *, new: bool) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._records, record.hash, json.dumps(record.to_json()))
            if new:
                pipe.hset(self._ids, record.id, record.hash)
            pipe.incr(self._version)
            await self._call(pipe.execute())

    async def add(self, record: ApiKey) -> None:
        await self._put(record, new=True)

    async def all(self) -> list[ApiKey]:
        values = await self._call(self._redis.hvals(self._records))
        records = [ApiKey.from_json(json.loads(raw)) for raw in values]
        return sorted(records, key=lambda record: (record.created_at, record.id))

    async def revoke(self, key_id: str) -> ApiKey | None:
        key_hash = await self._call(self._redis.hget(self._ids, key_id))
        if key_hash is None:
            return None
        record = await self.find(key_hash.decode())
        if record is None:
            return None
        revoked = record.revoke()
        await self._put(revoked, new=False)
        return revoked

    async def version(self) -> Hashable:
        value: Hashable = await self._call(self._redis.get(self._version))
        return value

    async def aclose(self) -> None:
        await self._redis.aclose()
