"""API keys: users prove who they are, and nobody spends another's budget.

A key (``sk-mt-...``) is shown once; stores keep its SHA-256 hash, a public id (``key_...``)
and a display prefix. :class:`KeyRing` checks the key a request carries, with a cache in front
of the store (:class:`FileKeyStore`, or :class:`RedisKeyStore` shared by a fleet)::

    store = FileKeyStore("keys.json")
    secret, record = new_key("alice", limits=["5/minute"])
    await store.add(record)
    app = Application(model=..., keys=KeyRing(store, require=True))
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .file_store import FileKeyStore, KeysFileError
from .records import KEY_PREFIX, ApiKey, hash_key, looks_like_key, new_key, parse_duration
from .ring import SUBPROTOCOL, KeyRing, bearer_token
from .store import KeyStore

if TYPE_CHECKING:
    from .redis_store import RedisKeyStore

__all__ = ["KEY_PREFIX", "SUBPROTOCOL", "ApiKey", "FileKeyStore", "KeyRing", "KeyStore", "KeysFileError",
           "RedisKeyStore", "bearer_token", "hash_key", "looks_like_key", "new_key", "parse_duration"]


def __getattr__(name: str) -> Any:
    # redis is imported only by those who keep keys in it.
    if name == "RedisKeyStore":
        from .redis_store import RedisKeyStore

        return RedisKeyStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
