"""Every run has a completion cap (``max_tokens``, else ``--default-max-tokens``): at the cap the
backend call is stopped and the answer ends normally with ``finish_reason: "length"``."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from monoai_tornado import DemoBackend
from monoai_tornado.agents import default_agents
from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.http import json_of, parse_sse
from tests.support.fake_openai import FakeOpenAI
from tests.support.ws_helpers import chunks_of, connect, read, read_until_end, send

#: 200 pieces of one word each: about one token a piece.
PIECES = [f" w{i}" for i in range(200)]


def piece_tokens(counter: Any, text: str) -> int:
    return max(counter.count(piece) for piece in PIECES if piece in text)


@pytest.mark.parametrize("value", [0, -3, 1.5, "10", True, [5], {"n": 1}])
@pytest.mark.parametrize("path", ["/model", "/model/stream", "/agent/assistant"])
async def test_a_max_tokens_that_is_not_a_positive_integer_is_a_400(app_url, fetch, path, value):
    backend = DemoBackend(delay=0)
    url = app_url(model=backend, agents=default_agents(backend))
    response = await fetch(url + path, "POST", {"prompt": "hi", "max_tokens": value})
    assert response.code == 400
    assert json_of(response)["code"] == "invalid_json"
    assert "max_tokens" in json_of(response)["error"]


async def test_a_bad_max_tokens_on_websocket_is_an_error_message_and_the_socket_stays_open(app_url):
    url = app_url()
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "hi", "max_tokens": 0})
    assert (await read(ws))["code"] == "invalid_json"
    await send(ws, {"prompt": "hi", "max_tokens": 3})
    messages = await read_until_end(ws)
    assert messages[-1]["type"] == "complete" and messages[-1]["result"]["finish_reason"] == "length"
    ws.close()


@pytest.mark.parametrize("transport", ["json", "sse", "ws"])
async def test_at_max_tokens_the_answer_ends_with_length_and_the_backend_is_stopped(app_url, fetch, counter, transport):
    backend = ScriptedBackend(PIECES)
    url = app_url(model=backend)
    body = {"prompt": "count", "max_tokens": 10}
    if transport == "json":
        result = json_of(await fetch(url + "/model", "POST", body))
        streamed = result["response"]
    elif transport == "sse":
        response = await fetch(url + "/model/stream", "POST", body, headers={"Accept": "text/event-stream"})
        events = parse_sse(response.body)
        assert events[-1][0] == "complete"
        result = events[-1][1]["result"]
        streamed = "".join(data["content"] for name, data in events if name == "chunk")
    else:
        ws = await connect(url, "/model/ws")
        await send(ws, body)
        messages = await read_until_end(ws)
        assert messages[-1]["type"] == "complete"
        result = messages[-1]["result"]
        streamed = chunks_of(messages)
        ws.close()
    assert result["finish_reason"] == "length"
    assert streamed == result["response"] and "".join(PIECES).startswith(result["response"])
    completion = result["usage"]["completion_tokens"]
    assert completion == counter.count(result["response"])
    assert 10 <= completion <= 10 + piece_tokens(counter, result["response"])  # at most one chunk past the cap
    assert backend.options[0].max_tokens == 10  # the cap went to the backend
    assert backend.sent_pieces[0] < len(PIECES) and backend.finished == 0  # its stream was closed


async def test_without_max_tokens_the_server_default_caps_the_run(app_url, fetch):
    backend = ScriptedBackend(PIECES)
    url = app_url(model=backend, default_max_tokens=7)
    capped = json_of(await fetch(url + "/model", "POST", {"prompt": "count"}))
    assert capped["finish_reason"] == "length" and backend.options[0].max_tokens == 7
    whole = json_of(await fetch(url + "/model", "POST", {"prompt": "count", "max_tokens": 1000}))
    assert whole["finish_reason"] == "stop" and whole["response"] == "".join(PIECES)
    assert backend.options[1].max_tokens == 1000


async def test_a_short_answer_under_the_default_cap_ends_with_stop_everywhere(app_url, fetch, counter):
    url = app_url()
    result = json_of(await fetch(url + "/model", "POST", {"prompt": "hi"}))
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == counter.count(result["response"])


async def test_an_agent_run_is_capped_across_its_model_calls(app_url, fetch):
    backend = DemoBackend(delay=0)
    url = app_url(model=backend, agents=default_agents(backend))
    whole = json_of(await fetch(url + "/agent/assistant", "POST", {"prompt": "what is 12*(3+4)?"}))
    assert whole["finish_reason"] == "stop"
    first_call = whole["iterations"][0]["usage"]["completion_tokens"]
    # A cap inside the first call's text: the answer ends there, its tool call is never run.
    capped = json_of(await fetch(url + "/agent/assistant", "POST", {"prompt": "what is 12*(3+4)?", "max_tokens": 3}))
    assert capped["finish_reason"] == "length"
    assert [step["type"] for step in capped["iterations"]] == ["model"]
    assert capped["iterations"][0]["tool_calls"] == [] and capped["usage"]["completion_tokens"] < first_call
    assert "Let me use the calculator.".startswith(capped["response"])
    # A cap the first call uses up: its tool runs, and no further model call is made.
    used_up = json_of(await fetch(url + "/agent/assistant", "POST",
                                  {"prompt": "what is 12*(3+4)?", "max_tokens": first_call}))
    assert used_up["finish_reason"] == "length"
    assert [step["type"] for step in used_up["iterations"]] == ["model", "tool"]
    assert used_up["usage"]["completion_tokens"] == first_call


async def test_the_openai_backend_sends_the_cap_upstream_as_max_tokens(app_url, fetch):
    async with FakeOpenAI(chunks=["Hel", "lo"], usage=(4, 2)) as upstream:
        backend = OpenAIBackend(upstream.base_url, "test")
        url = app_url(model=backend, default_max_tokens=321)
        first = json_of(await fetch(url + "/model", "POST", {"prompt": "hi"}))
        second = json_of(await fetch(url + "/model", "POST", {"prompt": "hi", "max_tokens": 2}))
    assert [r.body["max_tokens"] for r in upstream.requests] == [321, 2]
    assert first["finish_reason"] == "stop"
    # The upstream reported 2 completion tokens for a cap of 2: it stopped at the cap.
    assert second["finish_reason"] == "length" and second["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize("limited", [False, True])
@pytest.mark.slow  # takes a second or more
async def test_of_10_simultaneous_requests_exactly_max_concurrent_runs_run(make_app, serve, fetch, limited):
    backend = ScriptedBackend(["slow"] * 10, delay=0.05)
    limiter = RateLimiter([Limit("request", 1000, "minute")]) if limited else None
    app = make_app(model=backend, rate_limiter=limiter, max_concurrent_runs=2)
    url = serve(app)
    responses = await asyncio.gather(*(fetch(url + "/model", "POST", {"prompt": "x"}) for _ in range(10)))
    codes = sorted(r.code for r in responses)
    assert codes == [200] * 2 + [503] * 8
    refused = [r for r in responses if r.code == 503]
    assert all(json_of(r)["code"] == "overloaded" and r.headers["Retry-After"] == "1" for r in refused)
    assert backend.started == 2
    assert app.pipeline.admitted == 0
    assert (await fetch(url + "/model", "POST", {"prompt": "x"})).code == 200
