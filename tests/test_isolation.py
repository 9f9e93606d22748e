"""One client must never hurt another: a poisoned request, a borrowed IP identity, a wedged socket,
a CPU-heavy prompt. Each test has a victim whose requests must go on as if nothing happened."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection

from monoai_tornado.ratelimit import Limit, RateLimiter, RedisStore
from monoai_tornado.server import drain
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.http import json_of
from tests.support.processes import start_server, stop_server
from tests.support.ratelimit_fixtures import REDIS_URL, delete_prefix, need_redis
from tests.support.ws_helpers import connect, read, read_until_end, send


@pytest.mark.redis
async def test_poisoned_user_id_in_a_redis_batch_fails_nobody_else(app_url, fetch):
    """20 good prompts and one whose user_id holds an unpaired surrogate, sent at once."""
    need_redis()
    prefix = f"test:isolation:{uuid.uuid4().hex}:"
    limiter = RateLimiter([Limit("request", 100, "minute")], RedisStore(REDIS_URL, prefix=prefix))
    url = app_url(rate_limiter=limiter)
    try:
        good = [fetch(url + "/model", "POST", {"prompt": f"good {i}", "user_id": f"u{i}"}) for i in range(20)]
        poisoned = fetch(url + "/model", "POST", '{"prompt": "x", "user_id": "\\ud800"}')
        answers = await asyncio.gather(*good[:10], poisoned, *good[10:])
        bad = answers.pop(10)
        assert [a.code for a in answers] == [200] * 20
        assert bad.code == 400 and json_of(bad)["code"] == "invalid_json"
        assert (await limiter.stats())["active_users"] == 20
    finally:
        await limiter.aclose()
        delete_prefix(REDIS_URL, prefix)


async def test_a_user_id_cannot_spend_an_ip_identitys_budget(app_url, fetch):
    """``user_id: "ip:1.2.3.4"`` is not the anonymous client at 1.2.3.4 (separate namespaces)."""
    limiter = RateLimiter([Limit("request", 2, "minute")])
    url = app_url(rate_limiter=limiter, trusted_proxies=["127.0.0.1/32"])
    victim = {"X-Forwarded-For": "1.2.3.4"}
    attacker = {"X-Forwarded-For": "5.6.7.8"}
    for _ in range(4):
        await fetch(url + "/model", "POST", {"prompt": "x", "user_id": "ip:1.2.3.4"}, headers=attacker)
    for _ in range(2):
        assert (await fetch(url + "/model", "POST", {"prompt": "mine"}, headers=victim)).code == 200
    stats = json_of(await fetch(url + "/rate-limit/stats/ip:1.2.3.4"))
    assert stats["user_id"] == "ip:1.2.3.4" and stats["usage"] == {"2-per-60": 2}
    assert json_of(await fetch(url + "/rate-limit/stats/ip:5.6.7.8"))["usage"] == {"2-per-60": 2}
    assert (await fetch(url + "/model", "POST", {"prompt": "x", "user_id": "alice"}, headers=attacker)).code == 200
    assert json_of(await fetch(url + "/rate-limit/stats/alice"))["usage"] == {"2-per-60": 1}
    check = json_of(await fetch(url + "/validate-user", "POST", {"user_id": "ip:1.2.3.4"}))
    assert check == {"valid": False, "user_id": "ip:1.2.3.4", "error": "Invalid user_id"}


async def test_a_validator_cannot_normalize_into_the_ip_namespace(app_url, fetch):
    url = app_url(user_validator=lambda user_id: "ip:" + user_id, reject_invalid_users=True)
    refused = await fetch(url + "/model", "POST", {"prompt": "x", "user_id": "10.0.0.1"})
    assert refused.code == 403 and json_of(refused)["code"] == "forbidden"
    assert json_of(await fetch(url + "/validate-user", "POST", {"user_id": "10.0.0.1"}))["valid"] is False


async def prompt_and_cancel(ws: WebSocketClientConnection, prompt: str) -> None:
    """A prompt and a cancel written back to back, before either is answered."""
    await asyncio.gather(ws.write_message(json.dumps({"prompt": prompt})),
                         ws.write_message(json.dumps({"type": "cancel"})))


@pytest.mark.slow  # takes a second or more
async def test_cancel_right_after_a_prompt_never_wedges_the_socket(make_app, serve, caplog):
    """Prompt then cancel at once, 20 times; cancel spam while idle and while running: every
    prompt ends with exactly one "cancelled", the next prompt is served, and a drain finds
    nothing left to wait for."""
    backend = ScriptedBackend([f"piece{i} " for i in range(50)], delay=0.01)
    app = make_app(model=backend)
    server = app.http_server()
    url = serve(server)
    ws = await connect(url, "/model/ws")
    for i in range(20):
        await prompt_and_cancel(ws, f"p{i}")
    for _ in range(5):
        await send(ws, {"type": "cancel"})  # nothing running (or the last prompt, at most once)
    await send(ws, {"prompt": "spammed"})
    for _ in range(10):
        await send(ws, {"type": "cancel"})
    await send(ws, {"prompt": "after"})
    messages = []
    for _ in range(1000):
        message = await read(ws)
        messages.append(message)
        if message.get("type") == "complete":
            break
    kinds = [m.get("type") or m.get("code") for m in messages]
    assert kinds.count("cancelled") == 21
    assert messages[-1]["result"]["prompt"] == "after" and kinds.count("complete") == 1
    assert set(kinds) <= {"chunk", "cancelled", "complete", "nothing_to_cancel"}
    assert not app.lifecycle.busy and app.lifecycle.runs_in_flight == 0
    await send(ws, {"prompt": "still served"})
    last = [await read(ws) for _ in range(51)][-1]
    assert last["type"] == "complete" and last["result"]["prompt"] == "still served"
    await drain(app, server, timeout=3)
    assert "drain timeout" not in caplog.text
    assert await ws.read_message() is None  # closed by the drain (1001)


@pytest.mark.slow  # takes a second or more
async def test_prompt_and_cancel_in_one_write_then_the_next_prompt_is_served(app_url):
    """The probe's case, 20 trials: each cancel answered "cancelled", each next prompt completed."""
    backend = ScriptedBackend([f"piece{i} " for i in range(20)], delay=0.005)
    url = app_url(model=backend)
    ws = await connect(url, "/model/ws")
    for i in range(20):
        await prompt_and_cancel(ws, f"p{i}")
        assert (await read_until_end(ws))[-1] == {"type": "cancelled"}
        await send(ws, {"prompt": f"next{i}"})
        end = (await read_until_end(ws))[-1]
        assert end["type"] == "complete" and end["result"]["prompt"] == f"next{i}"
    ws.close()


@pytest.mark.process
async def test_a_cpu_heavy_prompt_does_not_stop_the_loop(fetch):
    """``"(" * 80000`` and a 24 kB prompt of many expressions to the demo agent: while each is
    running, another client's request is answered; the long one gets a bounded answer."""
    base, proc = start_server("--demo-delay", "0.005")
    try:
        many = " ".join(f"what is {i}*({i}+1)?" for i in range(1500))[:24_000]
        for prompt in ("(" * 80_000, many):
            started = asyncio.get_running_loop().create_future()
            heavy = AsyncHTTPClient().fetch(HTTPRequest(
                base + "/agent/assistant/stream", "POST", body=json.dumps({"prompt": prompt}),
                headers={"Accept": "text/event-stream"}, request_timeout=120,
                header_callback=lambda line, started=started: started.done() or started.set_result(None),
                streaming_callback=lambda chunk: None))
            await asyncio.wait_for(started, 60)  # the run starts as the headers go out
            probe = await fetch(base + "/health", request_timeout=20)
            assert probe.code == 200  # answered while the heavy prompt was in the works
            await heavy
        answer = await fetch(base + "/agent/assistant", "POST", {"prompt": many}, request_timeout=60)
        result = json_of(answer)
        assert answer.code == 200 and len(answer.body) < len(many) + 10_000  # the prompt, echoed, and a little more
        assert sum(step["type"] == "tool" for step in result["iterations"]) == 8
        assert result["response"].startswith("0*(0+1) = 0.")
    finally:
        stop_server(proc)
