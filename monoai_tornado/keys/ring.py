"""Who holds this key: :class:`KeyRing` checks the key a request carries, with a cache in front
of the store so that a request costs no store round trip.

The cache keeps what it learnt (found and not found) by hash and asks the store's
``version()`` at most once per ``refresh_interval`` (1 s); when the version changed, it
forgets everything. A key made or revoked anywhere is therefore seen everywhere within about
a second. Expiry is checked on every request, against the clock.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Callable, Hashable, Mapping, Protocol

from ..errors import InvalidApiKey, KeyStoreUnavailable, MissingApiKey
from .records import ApiKey, hash_key, looks_like_key
from .store import KeyStore

__all__ = ["CredentialMemo", "KeyRing", "bearer_token"]

log = logging.getLogger("monoai_tornado.keys")

#: The WebSocket subprotocol a browser offers (with ``bearer.KEY``); the server selects it.
SUBPROTOCOL = "monoai"
_SUBPROTOCOL_KEY = "bearer."


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The credential a request offers: None when it offers none, ``""`` when it is malformed.

    ``Authorization: Bearer KEY`` (the scheme in any case), else ``x-api-key: KEY`` (what
    Anthropic clients send), else, for browsers' WebSockets, a ``bearer.KEY`` entry of
    ``Sec-WebSocket-Protocol``.
    """
    value = headers.get("Authorization")
    if value is None:
        api_key = headers.get("X-Api-Key")
        if api_key is not None:
            return api_key.strip()
        offered = headers.get("Sec-WebSocket-Protocol")
        if offered:
            for protocol in offered.split(","):
                protocol = protocol.strip()
                if protocol.startswith(_SUBPROTOCOL_KEY):
                    return protocol[len(_SUBPROTOCOL_KEY):]
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class CredentialMemo(Protocol):
    """Where a connection keeps the credential header it last sent (as bytes) and the hash of its
    key, for as long as the connection lives: an SDK sends the same one on every request of a
    keep-alive connection, parsed and hashed once. The key is still looked up by its hash on
    every request (a revoked key is refused the same), and the header compared in constant time
    (a proxy may carry several clients' requests on one connection)."""

    credential: tuple[bytes, str] | None


def _offered(headers: Mapping[str, str]) -> bytes | None:
    """What a memo compares: the ``Authorization`` header, else ``x-api-key`` (after a NUL, which
    no header value holds, so the two never match each other)."""
    value = headers.get("Authorization")
    if value is not None:
        return value.encode()
    api_key = headers.get("X-Api-Key")
    return None if api_key is None else b"\0" + api_key.encode()


class KeyRing:
    """Authenticates API keys against a :class:`~monoai_tornado.keys.KeyStore`::

        ring = KeyRing(FileKeyStore("keys.json"), require=True)
        key = await ring.from_headers(request.headers)   # ApiKey, or None without a key
        key.user, key.id, key.rate_limits

    ``require``: a request without a key is refused (401 ``missing_api_key``). A wrong,
    revoked, expired or malformed key is always refused (401 ``invalid_api_key``).
    """

    def __init__(self, store: KeyStore, *, require: bool = False, refresh_interval: float = 1.0,
                 max_cached: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.require = require
        self.refresh_interval = refresh_interval
        self.max_cached = max_cached
        self._clock = clock
        self._cache: dict[str, ApiKey | None] = {}
        self._version: Hashable = None
        self._checked = float("-inf")
        self._refreshing: asyncio.Lock | None = None
        self._outage = False

    async def from_headers(self, headers: Mapping[str, str], memo: CredentialMemo | None = None) -> ApiKey | None:
        """The key the request carries; None when it carries none and none is required.
        ``memo``: the connection's, when it keeps one."""
        offered = _offered(headers) if memo is not None else None
        remembered = memo.credential if memo is not None else None
        if remembered is not None and offered is not None and hmac.compare_digest(remembered[0], offered):
            key_hash = remembered[1]
        else:
            secret = bearer_token(headers)
            if secret is None:
                if self.require:
                    raise MissingApiKey("This server requires an API key: send 'Authorization: Bearer KEY' "
                                        "(or 'x-api-key: KEY')")
                return None
            key_hash = _hash_of(secret)
            if memo is not None and offered is not None:
                memo.credential = (offered, key_hash)
        if key_hash in self._cache and self._clock() - self._checked < self.refresh_interval:
            return self._usable(key_hash, self._cache[key_hash])  # the usual case, without a second coroutine
        return await self._look_up(key_hash)

    async def authenticate(self, secret: str) -> ApiKey:
        """The usable key ``secret`` is; :class:`InvalidApiKey` for anything else."""
        return await self._look_up(_hash_of(secret))

    async def _look_up(self, key_hash: str) -> ApiKey:
        """The usable key of ``key_hash``: from the cache (refreshed when due), else the store."""
        if self._clock() - self._checked >= self.refresh_interval:
            await self._refresh()
        try:
            record = self._cache[key_hash]
        except KeyError:
            record = await self.store.find(key_hash)  # KeyStoreUnavailable: 503
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
            self._cache[key_hash] = record
        return self._usable(key_hash, record)

    @staticmethod
    def _usable(key_hash: str, record: ApiKey | None) -> ApiKey:
        """``record`` when it is the key of ``key_hash`` and usable now; else the refusal."""
        if record is None or not hmac.compare_digest(record.hash, key_hash):
            raise InvalidApiKey("Invalid API key")
        if record.revoked:
            raise InvalidApiKey("This API key has been revoked")
        if record.expired():
            raise InvalidApiKey("This API key has expired")
        return record

    async def _refresh(self) -> None:
        """Forget the cache if the store's version changed (one check at a time)."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            if self._clock() - self._checked < self.refresh_interval:
                return  # another request just checked
            try:
                version = await self.store.version()
            except KeyStoreUnavailable as exc:
                # Known keys keep working from the cache; unknown ones get a 503 from find().
                if not self._outage:
                    log.warning("%s; serving the keys already known", exc)
                    self._outage = True
                self._checked = self._clock()
                return
            if self._outage:
                log.info("key store available again")
                self._outage = False
            if version != self._version:
                self._cache.clear()
                self._version = version
            self._checked = self._clock()

    async def add(self, record: ApiKey) -> None:
        """Keep a new key (this process sees it at once; the others within a second)."""
        await self.store.add(record)
        self._cache.pop(record.hash, None)

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key (refused by this process at once; by the others within a second)."""
        revoked = await self.store.revoke(key_id)
        if revoked is not None:
            self._cache.pop(revoked.hash, None)
        return revoked

    async def aclose(self) -> None:
        await self.store.aclose()


def _hash_of(secret: str) -> str:
    """The hash a key of our format is kept by; :class:`InvalidApiKey` for anything else
    (checked before any store is asked)."""
    if not looks_like_key(secret):
        raise InvalidApiKey("Invalid API key")
    return hash_key(secret)
