"""What the key cache and the ``keys`` commands need from a place that keeps key records."""
from __future__ import annotations

from typing import Hashable, Protocol

from .records import ApiKey

__all__ = ["KeyStore"]


class KeyStore(Protocol):
    """Key records by hash; :class:`~monoai_tornado.keys.FileKeyStore` and
    :class:`~monoai_tornado.keys.RedisKeyStore` implement it.

    ``version()`` changes whenever a key is added or revoked (by any process sharing the
    store): the cache in front asks it about once a second and forgets what it knew when it
    changed. A store that cannot be reached raises
    :class:`~monoai_tornado.errors.KeyStoreUnavailable`.
    """

    async def find(self, key_hash: str) -> ApiKey | None:
        """The record of the key with this SHA-256 hex digest, revoked or not."""

    async def add(self, record: ApiKey) -> None:
        """Keep a new record."""

    async def all(self) -> list[ApiKey]:
        """Every record, oldest first."""

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Mark the key revoked (again is fine); None when no key has that id."""

    async def version(self) -> Hashable:
        """A value that changes whenever the set of keys does."""

    async def aclose(self) -> None:
        """Release connections."""
