"""Faults: backends that fail mid-stream, clients that vanish at each stage of a run.
Every case ends in the documented error, leaves no task behind, and bills what was generated."""
from __future__ import annotations

import asyncio
import json

import pytest

from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.http import json_of

TOKENS = "100000-tokens-per-86400"


@pytest.fixture
def budget_url(app_url):
    """``budget_url(backend)``: an app on ``backend`` behind a 100,000-tokens-a-day budget."""
    return lambda backend: app_url(model=backend, rate_limiter=RateLimiter([Limit("token", 100_000, "day")]))


async def settle_down(before: set) -> set:
    """Tasks started since ``before`` that are still pending after a short grace period."""
    for _ in range(100):
        left = {t for t in asyncio.all_tasks() if t not in before and t is not asyncio.current_task() and not t.done()}
        if not left:
            return left
        await asyncio.sleep(0.01)
    return left


@pytest.mark.parametrize("failure,status", [("error", 502), ("timeout", 504), ("crash", 502)])
async def test_backend_failing_mid_stream_bills_what_was_generated(budget_url, fetch, counter, failure, status):
    backend = ScriptedBackend(["one ", "two ", "three ", "four"], failure=failure, fail_after=2)
    url = budget_url(backend)
    response = await fetch(url + "/model", "POST", {"prompt": "bill the partial run", "user_id": "f"})
    assert response.code == status
    await asyncio.sleep(0.05)
    used = json_of(await fetch(url + "/rate-limit/stats/f"))["usage"][TOKENS]
    assert used == counter.count_messages([{"role": "user", "content": "bill the partial run"}]) + counter.count("one two ")


async def raw_post(port: int, body: bytes, declared: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    length = len(body) if declared is None else declared
    writer.write(b"POST /model HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (length, body))
    await writer.drain()
    return reader, writer


async def test_client_vanishing_while_sending_its_body(budget_url, fetch):
    backend = ScriptedBackend(["x"])
    url = budget_url(backend)
    before = set(asyncio.all_tasks())
    _, writer = await raw_post(int(url.rsplit(":", 1)[1]), b'{"prompt": "half', declared=200)
    writer.close()
    assert not await settle_down(before)
    assert backend.started == 0
    assert (await fetch(url + "/model", "POST", {"prompt": "next"})).code == 200


async def test_client_vanishing_while_waiting_for_a_json_answer_cancels_the_run(budget_url, fetch, counter, caplog):
    backend = ScriptedBackend([f"w{i} " for i in range(300)], delay=0.01)
    url = budget_url(backend)
    before = set(asyncio.all_tasks())
    body = json.dumps({"prompt": "leave early", "user_id": "gone"}).encode()
    _, writer = await raw_post(int(url.rsplit(":", 1)[1]), body)
    for _ in range(200):
        if backend.started:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    writer.close()
    for _ in range(200):
        if backend.cancelled:
            break
        await asyncio.sleep(0.01)
    assert backend.cancelled == 1 and backend.sent_pieces[-1] < 300
    assert not await settle_down(before)
    used = json_of(await fetch(url + "/rate-limit/stats/gone"))["usage"][TOKENS]
    generated = "".join(f"w{i} " for i in range(backend.sent_pieces[-1]))
    assert used == counter.count_messages([{"role": "user", "content": "leave early"}]) + counter.count(generated)
    access = [r.getMessage() for r in caplog.records if r.name == "monoai_tornado.access"]
    assert any(line.startswith("499 POST /model user=gone") for line in access), access
    assert 'endpoint="model",status="499"' in (await fetch(url + "/metrics")).body.decode()


async def test_client_vanishing_after_the_answer_leaves_nothing_behind(budget_url, fetch):
    url = budget_url(ScriptedBackend(["done"]))
    before = set(asyncio.all_tasks())
    reader, writer = await raw_post(int(url.rsplit(":", 1)[1]), json.dumps({"prompt": "p"}).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    assert not await settle_down(before)


@pytest.mark.redis
@pytest.mark.slow  # takes a second or more
async def test_redis_stopping_mid_run_then_coming_back(app_url, fetch, tmp_path):
    from monoai_tornado.ratelimit import RedisStore
    from tests.support.ratelimit_fixtures import RedisServer, need_redis

    need_redis()  # redis-server must be installed (CI installs it)
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        backend = ScriptedBackend([f"w{i} " for i in range(30)], delay=0.02)
        limiter = RateLimiter([Limit("request", 100, "minute")], RedisStore(redis.url))
        url = app_url(model=backend, rate_limiter=limiter)
        running = asyncio.ensure_future(fetch(url + "/model", "POST", {"prompt": "admitted", "user_id": "r"}))
        for _ in range(200):
            if backend.started:
                break
            await asyncio.sleep(0.01)
        redis.stop()  # Redis goes away while the admitted run streams
        assert (await running).code == 200  # the admitted run finishes
        refused = await fetch(url + "/model", "POST", {"prompt": "x", "user_id": "r"})
        assert refused.code == 503 and json_of(refused)["code"] == "limiter_unavailable"
        redis.start()  # and comes back on the same port: the server recovers by itself
        for _ in range(50):
            response = await fetch(url + "/model", "POST", {"prompt": "x", "user_id": "r"})
            if response.code == 200:
                break
            await asyncio.sleep(0.1)
        assert response.code == 200
    finally:
        redis.stop()
