"""Overload protection and the Prometheus metrics a operator scrapes."""
from __future__ import annotations

import asyncio

from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.http import json_of
from tests.support.ws_helpers import connect, read_until_end, send


async def test_past_max_concurrent_runs_new_prompts_get_503_at_once(app_url, fetch):
    backend = ScriptedBackend(["slow"] * 20, delay=0.02)
    url = app_url(model=backend, max_concurrent_runs=2)
    running = [asyncio.ensure_future(fetch(url + "/model", "POST", {"prompt": "x"})) for _ in range(2)]
    for _ in range(100):
        if backend.started == 2:
            break
        await asyncio.sleep(0.01)
    refused = await fetch(url + "/model", "POST", {"prompt": "x"})
    assert refused.code == 503
    assert json_of(refused)["code"] == "overloaded"
    assert refused.headers["Retry-After"] == "1"
    assert [r.code for r in await asyncio.gather(*running)] == [200, 200]
    assert (await fetch(url + "/model", "POST", {"prompt": "x"})).code == 200
    assert backend.started == 3


async def test_metrics_count_requests_tokens_refusals_and_latency(app_url, fetch):
    limiter = RateLimiter([Limit("request", 2, "minute")])
    backend = ScriptedBackend(["a", "b"], usage=(5, 7))
    url = app_url(model=backend, rate_limiter=limiter)
    for _ in range(3):
        await fetch(url + "/model", "POST", {"prompt": "x", "user_id": "m"})
    await fetch(url + "/model", "POST", b"{")
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "x", "user_id": "w"})
    await read_until_end(ws)
    response = await fetch(url + "/metrics")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.body.decode()
    assert 'monoai_requests_total{endpoint="model",status="200"} 2' in text
    assert 'monoai_requests_total{endpoint="model",status="429"} 1' in text
    assert 'monoai_requests_total{endpoint="model",status="400"} 1' in text
    assert 'monoai_requests_total{endpoint="model_ws",status="complete"} 1' in text
    assert 'monoai_tokens_total{user_kind="user",type="prompt"} 15' in text
    assert 'monoai_tokens_total{user_kind="user",type="completion"} 21' in text
    assert 'monoai_rate_limit_refusals_total{reason="rate_limited"} 1' in text
    assert "monoai_websockets_open 1" in text
    assert "monoai_runs_in_flight 0" in text
    assert 'monoai_first_chunk_seconds_bucket{le="+Inf"} 3' in text
    assert "monoai_first_chunk_seconds_count 3" in text


async def test_backend_errors_are_counted(app_url, fetch):
    url = app_url(model=ScriptedBackend(failure="timeout"))
    await fetch(url + "/model", "POST", {"prompt": "x"})
    text = (await fetch(url + "/metrics")).body.decode()
    assert 'monoai_backend_errors_total{code="backend_timeout"} 1' in text
    assert 'monoai_requests_total{endpoint="model",status="504"} 1' in text


async def test_metrics_need_the_admin_token_when_one_is_set(app_url, fetch):
    url = app_url(admin_token="tok")
    assert (await fetch(url + "/metrics")).code == 403
    assert (await fetch(url + "/metrics", headers={"Authorization": "Bearer tok"})).code == 200


async def test_access_log_names_user_status_tokens_and_duration(app_url, fetch, caplog):
    import logging

    url = app_url(model=ScriptedBackend(["a"], usage=(2, 3)))
    with caplog.at_level(logging.INFO, logger="monoai_tornado.access"):
        await fetch(url + "/model", "POST", {"prompt": "x", "user_id": "logged_user"})
    line = next(r.getMessage() for r in caplog.records if r.name == "monoai_tornado.access")
    assert line.startswith("200 POST /model user=logged_user tokens=5 ")
    assert line.endswith("ms")
