"""Token budgets that hold while answers stream, over the real server (memory store and Redis).

Admission reserves the prompt plus ``min(cap, budget left)``; however a run ends, its
reservation is settled to what it used and the rest is given back. Concurrency limits refuse
a user's next run at once with 429 ``too_many_concurrent`` while other users run.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.support.ratelimit_fixtures import redis_prefix, store_kind  # noqa: F401  (fixtures)

from monoai_tornado.ratelimit import Limit, MemoryStore, RateLimiter, RedisStore
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.http import json_of, parse_sse, sse_until
from tests.support.ws_helpers import chunks_of, connect, read, read_until_end, send

SSE = {"Accept": "text/event-stream"}
#: 200 pieces of about one token each.
PIECES = [f" w{i}" for i in range(200)]
LIMIT = Limit("token", 5000, "hour")


@pytest.fixture
def make_store(store_url: str, redis_prefix: str, io_loop: Any) -> Any:  # noqa: F811
    stores: list[Any] = []

    def make() -> Any:
        store = RedisStore(store_url, prefix=redis_prefix) if store_url else MemoryStore()
        stores.append(store)
        return store

    yield make
    for store in stores:
        io_loop.run_sync(store.aclose)


async def figures(limiter: RateLimiter, user: str) -> tuple[int, int]:
    """(tokens used in the window, of which reserved by runs in flight)."""
    stats = await limiter.user_stats(user)
    return stats["usage"][LIMIT.name], stats["reserved"][LIMIT.name]


async def settled(limiter: RateLimiter, user: str) -> int:
    """The user's tokens once nothing is reserved any more (bounded wait)."""
    for _ in range(500):
        used, reserved = await figures(limiter, user)
        if reserved == 0:
            return used
        await asyncio.sleep(0.01)
    raise AssertionError(f"{user} still holds {reserved} reserved tokens")


def prompt_tokens(counter: Any, prompt: str) -> int:
    """A prompt's tokens as admission counts them: one user message in its chat template."""
    return int(counter.count_messages([{"role": "user", "content": prompt}]))


def limiter_on(store: Any, **limiter_options: Any) -> RateLimiter:
    """The limiter of these tests: ``LIMIT`` on ``store``."""
    return RateLimiter([LIMIT], store, **limiter_options)


async def test_a_token_budget_lowers_the_cap_of_the_run(app_url, fetch, counter, make_store):
    backend = ScriptedBackend(PIECES)
    limiter = RateLimiter([Limit("token", 30, "hour")], make_store())
    url = app_url(model=backend, rate_limiter=limiter)
    result = json_of(await fetch(url + "/model", "POST", {"prompt": "count", "user_id": "u", "max_tokens": 500}))
    assert result["finish_reason"] == "length"
    assert backend.options[0].max_tokens == 30 - prompt_tokens(counter, "count")
    used = (await limiter.user_stats("u"))["usage"]["30-tokens-per-3600"]
    assert used == result["usage"]["total_tokens"]
    assert used <= 30 + max(counter.count(piece) for piece in PIECES)  # at most one chunk past the limit
    refused = await fetch(url + "/model", "POST", {"prompt": "count", "user_id": "u"})
    assert refused.code == 429 and json_of(refused)["code"] == "rate_limited" and "Retry-After" in refused.headers


async def test_while_a_run_streams_its_reservation_shows_and_then_returns(app_url, fetch, counter, make_store):
    backend = ScriptedBackend(PIECES[:20], delay=0.02)
    limiter = limiter_on(make_store())
    url = app_url(model=backend, rate_limiter=limiter)
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "go", "user_id": "u", "max_tokens": 1000})
    assert (await read(ws))["type"] == "chunk"
    prompt = prompt_tokens(counter, "go")
    assert await figures(limiter, "u") == (prompt + 1000, prompt + 1000)
    messages = await read_until_end(ws)
    told = messages[-1]["result"]["usage"]["total_tokens"]
    assert await settled(limiter, "u") == told
    stats = await limiter.stats()
    assert stats["reserved_tokens"] == 0 and stats["totals"]["tokens"] == told
    ws.close()


async def test_a_cancel_message_returns_the_unused_reservation(app_url, counter, make_store):
    backend = ScriptedBackend(PIECES, delay=0.02)
    limiter = limiter_on(make_store())
    url = app_url(model=backend, rate_limiter=limiter)
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "go", "user_id": "u", "max_tokens": 1000})
    first = await read(ws)
    await send(ws, {"type": "cancel"})
    messages = [first, *await read_until_end(ws)]
    assert messages[-1] == {"type": "cancelled"}
    used = await settled(limiter, "u")
    assert prompt_tokens(counter, "go") + counter.count(chunks_of(messages)) <= used < prompt_tokens(counter, "go") + 200
    ws.close()


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_a_client_leaving_mid_stream_returns_the_unused_reservation(app_url, counter, make_store, transport):
    backend = ScriptedBackend(PIECES, delay=0.02)
    limiter = limiter_on(make_store())
    url = app_url(model=backend, rate_limiter=limiter)
    body = {"prompt": "go", "user_id": "u", "max_tokens": 1000}
    if transport == "ws":
        ws = await connect(url, "/model/ws")
        await send(ws, body)
        assert (await read(ws))["type"] == "chunk"
        ws.close()
    else:
        await sse_until(url, body, b"event: chunk")
    used = await settled(limiter, "u")
    assert prompt_tokens(counter, "go") < used < prompt_tokens(counter, "go") + 200
    assert backend.cancelled == 1


@pytest.mark.parametrize("transport", ["json", "sse", "ws"])
async def test_a_backend_error_mid_stream_returns_the_unused_reservation(app_url, fetch, counter, make_store, transport):
    backend = ScriptedBackend(PIECES, failure="error", fail_after=5)
    limiter = limiter_on(make_store())
    url = app_url(model=backend, rate_limiter=limiter)
    body = {"prompt": "go", "user_id": "u", "max_tokens": 1000}
    if transport == "json":
        response = await fetch(url + "/model", "POST", body)
        assert response.code == 502
    elif transport == "sse":
        response = await fetch(url + "/model/stream", "POST", body, headers=SSE)
        assert parse_sse(response.body)[-1][1]["code"] == "backend_error"
    else:
        ws = await connect(url, "/model/ws")
        await send(ws, body)
        assert (await read_until_end(ws))[-1]["code"] == "backend_error"
        ws.close()
    assert await settled(limiter, "u") == prompt_tokens(counter, "go") + counter.count("".join(PIECES[:5]))


@pytest.mark.slow  # takes a second or more
async def test_a_concurrency_limit_refuses_a_second_run_of_the_user_while_others_run(app_url, fetch, make_store):
    backend = ScriptedBackend(PIECES[:30], delay=0.02)
    limiter = limiter_on(make_store(), concurrency_limit=1)
    url = app_url(model=backend, rate_limiter=limiter)
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "first", "user_id": "alice"})
    assert (await read(ws))["type"] == "chunk"  # alice's run is in flight
    second = await fetch(url + "/model", "POST", {"prompt": "second", "user_id": "alice"})
    assert second.code == 429 and json_of(second)["code"] == "too_many_concurrent"
    assert "Retry-After" not in second.headers
    other_ws = await connect(url, "/model/ws")
    await send(other_ws, {"prompt": "third", "user_id": "alice"})
    assert (await read(other_ws))["code"] == "too_many_concurrent"
    sse = await fetch(url + "/model/stream", "POST", {"prompt": "4th", "user_id": "alice"}, headers=SSE)
    assert sse.code == 429 and json_of(sse)["code"] == "too_many_concurrent"
    bob = await fetch(url + "/model", "POST", {"prompt": "other user", "user_id": "bob"})
    assert bob.code == 200
    assert (await read_until_end(ws))[-1]["type"] == "complete"
    for _ in range(500):  # the slot is free once the run is settled
        if (await limiter.user_stats("alice"))["concurrency"]["in_flight"] == 0:
            break
        await asyncio.sleep(0.01)
    assert (await fetch(url + "/model", "POST", {"prompt": "again", "user_id": "alice"})).code == 200
    ws.close()
    other_ws.close()

