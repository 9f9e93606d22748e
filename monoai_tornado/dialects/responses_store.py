"""Stored responses of the Responses front: what ``previous_response_id``, GET and DELETE read.

A record holds the response object as it was answered and the conversation's items so far
(earlier turns, this turn's input, its output), so continuing a conversation is one read,
whatever the length of the chain behind it. Records belong to a user: another user's id is
simply not found. Both stores are bounded:

- :class:`MemoryResponseStore`: at most ``max_per_user`` records per user and ``max_bytes`` in
  all; the oldest go first. One process only.
- :class:`RedisResponseStore` (``--redis-url``): every process and machine shares the records;
  each expires after ``ttl`` seconds (30 days) and a user keeps at most ``max_per_user``.
  A user's keys share one hash tag, so a Redis Cluster keeps them in one slot::

      {prefix}{resp:USER}:RESP_ID   string  JSON record, EX ttl
      {prefix}{resp:USER}:index     zset    RESP_ID by order of creation (the user's ``seq``)
      {prefix}{resp:USER}:seq       integer, the user's last order
"""
from __future__ import annotations

import asyncio
import collections
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ApiError

__all__ = ["StoredResponse", "ResponseStore", "MemoryResponseStore", "RedisResponseStore", "StoreUnavailable",
           "valid_id", "DEFAULT_TTL"]

#: Seconds a stored response lives (OpenAI keeps them 30 days).
DEFAULT_TTL = 30 * 24 * 3600
#: Responses one user may have stored; their oldest go first.
DEFAULT_MAX_PER_USER = 1000
#: Bytes of records the memory store keeps in all.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_ID_RE = re.compile(r"resp_[A-Za-z0-9]{1,64}")


def valid_id(response_id: str) -> bool:
    """Whether ``response_id`` could be one of ours (anything else is not looked up)."""
    return _ID_RE.fullmatch(response_id) is not None


class StoreUnavailable(ApiError):
    """The response store (Redis) cannot be reached."""

    status, code = 503, "store_unavailable"


@dataclass(frozen=True)
class StoredResponse:
    """One finished response: its owner, the answer, and the conversation's items so far."""

    id: str
    user: str
    created_at: int
    response: dict[str, Any]
    items: tuple[dict[str, Any], ...]

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "user": self.user, "created_at": self.created_at,
                           "response": self.response, "items": list(self.items)},
                          ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> StoredResponse:
        data = json.loads(text)
        return cls(data["id"], data["user"], int(data["created_at"]), data["response"], tuple(data["items"]))


class ResponseStore(Protocol):
    """Where responses are kept, per user."""

    async def get(self, user: str, response_id: str) -> StoredResponse | None:
        """The user's response ``response_id``; None if unknown, expired or another user's."""

    async def put(self, record: StoredResponse) -> None:
        """Keep ``record`` (evicting the user's oldest past the store's bounds)."""

    async def delete(self, user: str, response_id: str) -> bool:
        """Forget the user's response; False if there was none."""

    async def aclose(self) -> None:
        """Release connections."""


class MemoryResponseStore:
    """Records in this process, bounded in count per user and in bytes overall."""

    def __init__(self, *, max_per_user: int = DEFAULT_MAX_PER_USER, max_bytes: int = DEFAULT_MAX_BYTES,
                 ttl: float = DEFAULT_TTL) -> None:
        self.max_per_user = max_per_user
        self.max_bytes = max_bytes
        self.ttl = ttl
        #: (user, id) -> (record, size, expires at), oldest first.
        self._records: collections.OrderedDict[tuple[str, str], tuple[StoredResponse, int, float]] = \
            collections.OrderedDict()
        self._per_user: dict[str, collections.OrderedDict[str, None]] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._records)

    async def get(self, user: str, response_id: str) -> StoredResponse | None:
        entry = self._records.get((user, response_id))
        if entry is None:
            return None
        if entry[2] < time.monotonic():
            self._drop(user, response_id)
            return None
        return entry[0]

    async def put(self, record: StoredResponse) -> None:
        size = len(record.to_json())
        if size > self.max_bytes:
            return  # could never be kept
        self._drop(record.user, record.id)
        self._records[(record.user, record.id)] = (record, size, time.monotonic() + self.ttl)
        self._per_user.setdefault(record.user, collections.OrderedDict())[record.id] = None
        self.bytes += size
        mine = self._per_user[record.user]
        while len(mine) > self.max_per_user:
            self._drop(record.user, next(iter(mine)))
        while self.bytes > self.max_bytes:
            user, response_id = next(iter(self._records))
            self._drop(user, response_id)

    async def delete(self, user: str, response_id: str) -> bool:
        return self._drop(user, response_id)

    def _drop(self, user: str, response_id: str) -> bool:
        entry = self._records.pop((user, response_id), None)
        if entry is None:
            return False
        self.bytes -= entry[1]
        mine = self._per_user.get(user)
        if mine is not None:
            mine.pop(response_id, None)
            if not mine:
                del self._per_user[user]
        return True

    async def aclose(self) -> None:
        pass


class RedisResponseStore:
    """Records in the Redis at ``url`` (any URL ``--redis-url`` takes), shared by every process."""

    def __init__(self, url: str, prefix: str = "monoai:", *, ttl: int = DEFAULT_TTL,
                 max_per_user: int = DEFAULT_MAX_PER_USER, socket_timeout: float = 2.0) -> None:
        from ..ratelimit.redis_store import UNAVAILABLE, connect, tag_escape

        self.url = url
        self.prefix = prefix
        self.ttl = ttl
        self.max_per_user = max_per_user
        self._unavailable = UNAVAILABLE
        self._tag = tag_escape
        self._redis = connect(url, socket_timeout=socket_timeout, max_connections=64)

    def _key(self, user: str, name: str) -> str:
        return f"{self.prefix}{{resp:{self._tag(user)}}}:{name}"

    async def _call(self, coroutine: Any) -> Any:
        try:
            return await coroutine
        except self._unavailable as exc:
            raise StoreUnavailable(f"response store at {self.url} unavailable: {type(exc).__name__}") from None

    async def get(self, user: str, response_id: str) -> StoredResponse | None:
        if not valid_id(response_id):
            return None
        raw = await self._call(self._redis.get(self._key(user, response_id)))
        if raw is None:
            return None
        record = StoredResponse.from_json(raw)
        return record if record.user == user else None

    async def put(self, record: StoredResponse) -> None:
        index, counter = self._key(record.user, "index"), self._key(record.user, "seq")
        order = await self._call(self._redis.incr(counter))  # the user's records in the order they came
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key(record.user, record.id), record.to_json(), ex=self.ttl)
            pipe.zadd(index, {record.id: order})
            pipe.expire(index, self.ttl)
            pipe.expire(counter, self.ttl)
            pipe.zcard(index)
            results = await self._call(pipe.execute())
        excess = int(results[-1]) - self.max_per_user
        if excess > 0:
            oldest = await self._call(self._redis.zpopmin(index, excess))
            names = [self._key(record.user, member.decode() if isinstance(member, bytes) else str(member))
                     for member, _score in oldest]
            if names:
                await self._call(self._redis.delete(*names))

    async def delete(self, user: str, response_id: str) -> bool:
        if not valid_id(response_id):
            return False
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._key(user, response_id))
            pipe.zrem(self._key(user, "index"), response_id)
            deleted, _ = await self._call(pipe.execute())
        return bool(deleted)

    async def aclose(self) -> None:
        try:
            await asyncio.wait_for(self._redis.aclose(), 2)
        except (*self._unavailable, AttributeError):
            pass
