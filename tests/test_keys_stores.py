"""Key records and the two stores (a real file, the real Redis), and the cache in front of them."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from monoai_tornado.errors import InvalidApiKey, KeyStoreUnavailable, MissingApiKey
from monoai_tornado.keys import (ApiKey, FileKeyStore, KeyRing, KeysFileError, RedisKeyStore, bearer_token,
                                 hash_key, looks_like_key, new_key, parse_duration)
from tests.support.ratelimit_fixtures import (  # noqa: F401  (redis_server: a fixture)
    REDIS_URL, FakeClock, RedisServer, delete_prefix, need_redis, redis_server)

pytestmark = pytest.mark.usefixtures("io_loop")


def test_a_new_key_has_the_documented_shape_and_only_its_hash_is_kept() -> None:
    secret, record = new_key("alice", name="laptop", limits=["5/minute"], token_limits=["1000/day"],
                             expires_in=30 * 86400)
    assert secret.startswith("sk-mt-") and looks_like_key(secret) and len(secret) > 40
    assert record.id.startswith("key_") and len(record.id) == 16
    assert record.hash == hash_key(secret) and len(record.hash) == 64
    assert secret.startswith(record.prefix) and len(record.prefix) < 16
    assert secret not in json.dumps(record.to_json()) and secret not in json.dumps(record.public())
    assert [limit.name for limit in record.rate_limits] == ["5-per-60", "1000-tokens-per-86400"]
    assert ApiKey.from_json(record.to_json()) == record
    assert record.public()["expires_at"].endswith("Z")
    assert new_key("alice")[0] != secret  # never the same key twice


@pytest.mark.parametrize("secret", ["sk-mt-" + "A" * 43, "sk-mt-x", "", "clé-è-🔑", "x" * 1000])
def test_a_key_hashes_to_its_sha256_so_stores_written_before_still_match(secret: str) -> None:
    assert hash_key(secret) == hashlib.sha256(secret.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("kwargs", [{"user": ""}, {"user": "ip:10.0.0.1"}, {"user": "u", "limits": ["5/fortnight"]},
                                    {"user": "u", "limits": ["5/minute", "5/minute"]},
                                    {"user": "u", "expires_in": 0}, {"user": "u", "expires_in": True}])
def test_new_key_refuses_what_would_not_work(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        new_key(kwargs.pop("user"), **kwargs)


def test_durations_and_bearer_parsing() -> None:
    assert [parse_duration(t) for t in ("30d", "12h", "15m", "90s", "3600", "1w")] == [
        2592000, 43200, 900, 90, 3600, 604800]
    with pytest.raises(ValueError):
        parse_duration("soon")
    assert bearer_token({"Authorization": "Bearer sk-mt-abc"}) == "sk-mt-abc"
    assert bearer_token({"Authorization": "bearer  sk-mt-abc "}) == "sk-mt-abc"
    assert bearer_token({"Authorization": "Basic abc"}) == ""
    assert bearer_token({"Authorization": "Bearer"}) == ""
    assert bearer_token({"Sec-WebSocket-Protocol": "monoai, bearer.sk-mt-abc"}) == "sk-mt-abc"
    assert bearer_token({}) is None
    assert not looks_like_key("sk-mt-") and not looks_like_key("sk-mt-" + "a" * 200)
    assert not looks_like_key("sk-mt-é") and not looks_like_key("sk-mtx-abc")


# -- the file store --------------------------------------------------------------------------

async def test_file_store_writes_atomically_and_a_second_store_sees_the_changes(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    writer, reader = FileKeyStore(path), FileKeyStore(path)  # two processes, in effect
    secret, record = new_key("alice")
    await writer.add(record)
    assert sorted(os.listdir(tmp_path)) == ["keys.json", "keys.json.lock"]  # no temporary file left
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert secret not in path.read_text()
    version = await reader.version()
    assert await reader.find(record.hash) == record
    await writer.revoke(record.id)
    assert await reader.version() != version
    found = await reader.find(record.hash)
    assert found is not None and found.revoked
    assert await writer.revoke("key_unknown0000") is None


async def test_a_broken_keys_file_is_refused_at_start_and_ignored_while_running(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(KeysFileError):
        FileKeyStore(path)
    path.unlink()
    store = FileKeyStore(path)  # a missing file is an empty store
    assert await store.all() == []
    _, record = new_key("alice")
    await store.add(record)
    path.write_text('{"keys": [{"half": ')  # someone writes it badly by hand
    await store.version()
    assert await store.find(record.hash) == record  # the keys known stay


async def test_the_ring_notices_a_change_of_the_file_within_its_refresh_interval(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    store = FileKeyStore(tmp_path / "keys.json")
    ring = KeyRing(store, clock=clock)
    secret, record = new_key("alice")
    other = FileKeyStore(tmp_path / "keys.json")  # another process writes the file
    with pytest.raises(InvalidApiKey):
        await ring.authenticate(secret)
    await other.add(record)
    clock.now += 1.0
    assert (await ring.authenticate(secret)).user == "alice"
    await other.revoke(record.id)
    assert (await ring.authenticate(secret)).user == "alice"  # cached until the next check
    clock.now += 1.0
    with pytest.raises(InvalidApiKey, match="revoked"):
        await ring.authenticate(secret)


async def test_the_ring_refuses_expired_and_malformed_keys_and_requires_when_told(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path / "keys.json")
    secret, record = new_key("alice", expires_in=10, now=1.0)
    await store.add(record)
    ring = KeyRing(store, require=True)
    with pytest.raises(InvalidApiKey, match="expired"):
        await ring.authenticate(secret)
    for bad in ("", "sk-mt-", "sk-mt-" + "x" * 5000, "sk-mt-ünï", "Bearer sk-mt-abc", "\x00"):
        with pytest.raises(InvalidApiKey):
            await ring.authenticate(bad)
    with pytest.raises(MissingApiKey):
        await ring.from_headers({})
    assert await KeyRing(store).from_headers({}) is None


# -- the Redis store -------------------------------------------------------------------------

@pytest.fixture
def redis_keys_prefix() -> Iterator[str]:
    need_redis()
    prefix = f"test:keys:{uuid.uuid4().hex}:"
    yield prefix
    delete_prefix(REDIS_URL, prefix)


async def test_redis_store_shares_keys_and_revocations_between_stores(redis_keys_prefix: str) -> None:
    one, two = RedisKeyStore(REDIS_URL, prefix=redis_keys_prefix), RedisKeyStore(REDIS_URL, prefix=redis_keys_prefix)
    try:
        secret, record = new_key("alice", limits=["5/minute"])
        version = await two.version()
        await one.add(record)
        assert await two.version() != version
        assert await two.find(record.hash) == record
        assert [r.id for r in await two.all()] == [record.id]
        revoked = await two.revoke(record.id)
        assert revoked is not None and revoked.revoked
        found = await one.find(record.hash)
        assert found is not None and found.revoked
        assert await one.revoke("key_unknown0000") is None
        # Only hashes are in Redis, all under the prefix.
        raw = await one._redis.hgetall(f"{redis_keys_prefix}{{apikeys}}:records")
        assert secret.encode() not in b"".join(k + v for k, v in raw.items())
    finally:
        await one.aclose()
        await two.aclose()


async def test_known_keys_cost_no_round_trip_and_unknown_ones_get_503_when_redis_is_down(
        redis_server: RedisServer) -> None:
    store = RedisKeyStore(redis_server.url, prefix="t:", socket_timeout=0.5)
    ring = KeyRing(store, refresh_interval=3600)
    try:
        secret, record = new_key("alice")
        await store.add(record)
        assert (await ring.authenticate(secret)).user == "alice"
        redis_server.stop()
        for _ in range(3):  # served from the cache: Redis is not asked
            assert (await ring.authenticate(secret)).user == "alice"
        with pytest.raises(KeyStoreUnavailable):
            await ring.authenticate(new_key("bob")[0])
    finally:
        await ring.aclose()
