"""Rate limits as a client sees them: 429s, headers, windows, tokens, identity, stats, WebSocket."""
from __future__ import annotations

import asyncio

import pytest

from monoai_tornado import DemoBackend
from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.http import json_of, parse_sse
from tests.support.ratelimit_fixtures import FakeClock
from tests.support.ws_helpers import chunks_of, connect, read, read_until_end, send


@pytest.fixture
def limited_url(app_url):
    """``limited_url(limits, backend=None, clock=None, **options)``: the app (the demo model unless
    ``backend``) behind a ``RateLimiter`` of ``limits`` on ``clock`` (a fixed one by default)."""

    def build(limits, backend=None, clock=None, **options):
        limiter = RateLimiter(limits, clock=clock or FakeClock(1_000_000.0))
        return app_url(model=backend or DemoBackend(delay=0), rate_limiter=limiter, **options)

    return build


async def test_n_plus_first_request_is_429_while_another_user_passes(limited_url, fetch):
    url = limited_url([Limit("request", 3, "minute")])
    for i in range(3):
        ok = await fetch(url + "/model", "POST", {"prompt": "hi", "user_id": "alice"})
        assert ok.code == 200
        assert ok.headers["x-ratelimit-limit-requests"] == "3"
        assert ok.headers["x-ratelimit-remaining-requests"] == str(2 - i)
    refused = await fetch(url + "/model", "POST", {"prompt": "hi", "user_id": "alice"})
    assert refused.code == 429
    body = json_of(refused)
    assert body["code"] == "rate_limited" and body["retry_after"] >= 1
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert (await fetch(url + "/model", "POST", {"prompt": "hi", "user_id": "bob"})).code == 200


async def test_headers_follow_the_ietf_draft_too(limited_url, fetch):
    url = limited_url([Limit("request", 10, "minute"), Limit("token", 5000, "hour")])
    response = await fetch(url + "/model", "POST", {"prompt": "hi", "user_id": "carol"})
    assert response.headers["RateLimit-Policy"] == '"10-per-60";q=10;w=60, "5000-tokens-per-3600";q=5000;w=3600'
    assert response.headers["RateLimit"].startswith('"10-per-60";r=9;t=')
    assert response.headers["x-ratelimit-limit-tokens"] == "5000"
    assert int(response.headers["x-ratelimit-remaining-tokens"]) < 5000


async def test_window_resets_with_the_clock(limited_url, fetch):
    clock = FakeClock(1_000_020.0)  # 20 s into a minute window aligned to the epoch (1_000_020 % 60 == 0)
    url = limited_url([Limit("request", 1, "minute")], clock=clock)
    assert (await fetch(url + "/model", "POST", {"prompt": "a", "user_id": "u"})).code == 200
    refused = await fetch(url + "/model", "POST", {"prompt": "a", "user_id": "u"})
    assert refused.code == 429
    clock.now += 61
    assert (await fetch(url + "/model", "POST", {"prompt": "a", "user_id": "u"})).code == 200


async def test_token_limit_refuses_once_recorded_tokens_pass_it(limited_url, fetch):
    backend = ScriptedBackend(["x"], usage=(10, 90))  # 100 tokens per run, as the backend reports
    url = limited_url([Limit("token", 250, "hour")], backend=backend)
    for _ in range(2):
        assert (await fetch(url + "/model", "POST", {"prompt": "p", "user_id": "t"})).code == 200
    third = await fetch(url + "/model", "POST", {"prompt": "p", "user_id": "t"})
    assert third.code == 200  # 200 used + 1 prompt token fits 250
    refused = await fetch(url + "/model", "POST", {"prompt": "p", "user_id": "t"})
    assert refused.code == 429 and json_of(refused)["code"] == "rate_limited"
    assert backend.started == 3  # the refused request never reached the model
    stats = json_of(await fetch(url + "/rate-limit/stats/t"))
    assert stats["usage"]["250-tokens-per-3600"] == 300


async def test_200_concurrent_requests_exactly_limit_pass(limited_url, fetch):
    url = limited_url([Limit("request", 50, "minute")])
    responses = await asyncio.gather(*(fetch(url + "/model", "POST", {"prompt": "c", "user_id": "crowd"})
                                       for _ in range(200)))
    codes = [r.code for r in responses]
    assert codes.count(200) == 50 and codes.count(429) == 150


async def test_sse_answer_carries_limit_headers_before_the_first_event(limited_url, fetch):
    url = limited_url([Limit("request", 5, "minute")])
    response = await fetch(url + "/model/stream", "POST", {"prompt": "s", "user_id": "sse"},
                           headers={"Accept": "text/event-stream"})
    assert response.headers["x-ratelimit-remaining-requests"] == "4"
    assert parse_sse(response.body)[-1][0] == "complete"


async def test_forged_forwarded_for_does_not_escape(limited_url, fetch):
    url = limited_url([Limit("request", 2, "minute")])
    codes = []
    for i in range(4):
        response = await fetch(url + "/model", "POST", {"prompt": "f"},
                               headers={"X-Forwarded-For": f"198.51.100.{i}", "X-Real-IP": f"203.0.113.{i}"})
        codes.append(response.code)
    assert codes == [200, 200, 429, 429]
    stats = json_of(await fetch(url + "/rate-limit/stats/ip:127.0.0.1"))
    assert stats["usage"]["2-per-60"] == 2


async def test_trusted_proxy_is_honoured(limited_url, fetch):
    url = limited_url([Limit("request", 1, "minute")], trusted_proxies=["127.0.0.1/32"])
    for client in ["198.51.100.1", "198.51.100.2"]:
        response = await fetch(url + "/model", "POST", {"prompt": "p"}, headers={"X-Forwarded-For": client})
        assert response.code == 200
    again = await fetch(url + "/model", "POST", {"prompt": "p"}, headers={"X-Forwarded-For": "198.51.100.1"})
    assert again.code == 429
    assert json_of(await fetch(url + "/rate-limit/stats/ip:198.51.100.2"))["usage"]["1-per-60"] == 1


async def test_normalized_user_shares_one_budget(limited_url, fetch):
    url = limited_url([Limit("request", 1, "minute")],
                      user_validator=lambda u: f"user_{u[6:]}" if u.startswith("admin_") else u.startswith("user_"))
    assert (await fetch(url + "/model", "POST", {"prompt": "p", "user_id": "admin_5"})).code == 200
    assert (await fetch(url + "/model", "POST", {"prompt": "p", "user_id": "user_5"})).code == 429


async def test_stats_figures_match_what_was_sent(limited_url, fetch):
    backend = ScriptedBackend(["x"], usage=(4, 6))
    url = limited_url([Limit("request", 10, "minute"), Limit("token", 1000, "day")], backend=backend)
    for user in ["a", "a", "b"]:
        await fetch(url + "/model", "POST", {"prompt": "q", "user_id": user})
    stats = json_of(await fetch(url + "/rate-limit/stats"))
    assert stats["active_users"] == 2
    assert stats["totals"] == {"requests": 3, "tokens": 30}
    assert [limit["name"] for limit in stats["limits"]] == ["10-per-60", "1000-tokens-per-86400"]
    user = json_of(await fetch(url + "/rate-limit/stats/a"))
    assert user["user_id"] == "a"
    assert user["usage"] == {"10-per-60": 2, "1000-tokens-per-86400": 20}
    assert user["remaining"] == {"10-per-60": 8, "1000-tokens-per-86400": 980}
    assert 0 < user["reset_in"]["10-per-60"] <= 60


async def test_stats_carry_the_original_keys_too(limited_url, fetch):
    # API.md, "Compatibility with the original": a client written for MonoAI reads these keys.
    backend = ScriptedBackend(["x"], usage=(4, 6))
    url = limited_url([Limit("request", 10, "minute"), Limit("token", 1000, "day")], backend=backend)
    await fetch(url + "/model", "POST", {"prompt": "q", "user_id": "a"})
    stats = json_of(await fetch(url + "/rate-limit/stats"))
    assert "10-per-60" in stats["rate_limiter"] and "MemoryStore" in stats["rate_limiter"]
    assert stats["global_stats"]["totals"] == stats["totals"] == {"requests": 1, "tokens": 10}
    assert stats["global_stats"]["active_users"] == 1
    user = json_of(await fetch(url + "/rate-limit/stats/a"))
    assert user["stats"]["10-per-60"]["used"] == user["usage"]["10-per-60"] == 1
    assert user["stats"]["1000-tokens-per-86400"]["remaining"] == 990
    assert user["stats"]["10-per-60"]["reset_in"] == user["reset_in"]["10-per-60"]


async def test_admin_token_guards_the_stats(limited_url, fetch):
    url = limited_url([Limit("request", 10, "minute")], admin_token="s3cret")
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}]:
        for path in ["/rate-limit/stats", "/rate-limit/stats/a"]:
            response = await fetch(url + path, headers=headers)
            assert response.code == 403 and json_of(response)["code"] == "forbidden"
    ok = await fetch(url + "/rate-limit/stats", headers={"Authorization": "Bearer s3cret"})
    assert ok.code == 200 and "limits" in json_of(ok)


async def test_limits_hold_on_the_websocket(limited_url):
    url = limited_url([Limit("request", 2, "minute")])
    ws = await connect(url, "/model/ws")
    for _ in range(2):
        await send(ws, {"prompt": "w", "user_id": "wsuser"})
        assert (await read_until_end(ws))[-1]["type"] == "complete"
    await send(ws, {"prompt": "w", "user_id": "wsuser"})
    refused = await read(ws)
    assert refused["code"] == "rate_limited" and refused["retry_after"] >= 1
    await send(ws, {"prompt": "w", "user_id": "other"})
    assert (await read_until_end(ws))[-1]["type"] == "complete"  # connection still open


async def test_cancelled_websocket_run_is_still_billed(limited_url, fetch, counter):
    backend = ScriptedBackend([f"word{i} " for i in range(300)], delay=0.01)
    url = limited_url([Limit("token", 100_000, "day")], backend=backend)
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "bill me", "user_id": "quitter"})
    messages = []
    for _ in range(5):
        messages.append(await read(ws))
    await send(ws, {"type": "cancel"})
    messages += await read_until_end(ws)
    assert messages[-1] == {"type": "cancelled"}
    await asyncio.sleep(0.05)
    used = json_of(await fetch(url + "/rate-limit/stats/quitter"))["usage"]["100000-tokens-per-86400"]
    generated = backend.sent_pieces[-1]
    expected = counter.count_messages([{"role": "user", "content": "bill me"}]) + counter.count("".join(f"word{i} " for i in range(generated)))
    assert used == expected
    assert 0 < generated < 300
    assert chunks_of(messages) in "".join(f"word{i} " for i in range(generated))


async def test_redis_down_is_503_limiter_unavailable_or_passes_when_fail_open(app_url, fetch):
    from monoai_tornado.ratelimit import RedisStore

    from tests.support.processes import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    closed = app_url(rate_limiter=RateLimiter([Limit("request", 5, "minute")], RedisStore(dead)))
    response = await fetch(closed + "/model", "POST", {"prompt": "x"})
    assert response.code == 503 and json_of(response)["code"] == "limiter_unavailable"
    ws = await connect(closed, "/model/ws")
    await send(ws, {"prompt": "x"})
    assert (await read(ws))["code"] == "limiter_unavailable"
    opened = app_url(rate_limiter=RateLimiter([Limit("request", 5, "minute")], RedisStore(dead),
                                                        fail_open=True))
    assert (await fetch(opened + "/model", "POST", {"prompt": "x"})).code == 200
