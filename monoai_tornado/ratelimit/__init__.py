"""Rate limiting: what is allowed (:class:`Limit`), the decision (:class:`RateLimiter`), and
where the counters live (:class:`MemoryStore` for one process, :class:`RedisStore` for a fleet).

Example (in a coroutine)::

    limiter = RateLimiter([parse_limit("10/minute"), parse_limit("10000/hour", unit="token")])
    admission = await limiter.admit("alice", prompt_tokens=12)
    headers = rate_limit_headers(admission.states)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .headers import rate_limit_headers
from .limiter import Admission, FastPath, Limiter, LimitState, RateLimiter, Store, StoreUnavailable
from .limits import Limit, parse_limit
from .memory import MemoryStore

if TYPE_CHECKING:
    from .redis_store import RedisStore

__all__ = [
    "Admission",
    "FastPath",
    "Limit",
    "Limiter",
    "LimitState",
    "MemoryStore",
    "RateLimiter",
    "RedisStore",
    "Store",
    "StoreUnavailable",
    "parse_limit",
    "rate_limit_headers",
]


def __getattr__(name: str) -> Any:
    # redis is imported only by those who use it.
    if name == "RedisStore":
        from ..extras import require

        require("redis.asyncio", "redis", "RedisStore")
        from .redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
