"""What the upstream says is what the client hears (issue 28): its ``finish_reason`` wins, the
prompt of a cut answer is still counted by ``--prompt-tokens chat``, an unreachable upstream is
named by its real cause, a request that got no answer costs nothing, and ``/health`` says so."""
from __future__ import annotations

import asyncio

from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.http import json_of, parse_sse
from tests.support.processes import free_port

PROMPT = {"prompt": "Tell me a long story", "max_tokens": 50}


async def test_the_upstreams_length_wins_over_our_lower_count(app_url, fetch):
    # The model stopped at its cap by its own count ("length") though ours is lower.
    async with FakeOpenAI(chunks=["Once", " upon"], usage=None, finish_reason="length") as upstream:
        url = app_url(model=OpenAIBackend(upstream.base_url, "m"))
        answer = await fetch(url + "/model", "POST", PROMPT)
        assert answer.code == 200 and json_of(answer)["finish_reason"] == "length"
        chat = await fetch(url + "/v1/chat/completions", "POST",
                           {"model": "m", "messages": [{"role": "user", "content": "story"}], "max_tokens": 50})
        assert json_of(chat)["choices"][0]["finish_reason"] == "length"
        stream = await fetch(url + "/model/stream", "POST", PROMPT, headers={"Accept": "text/event-stream"})
        assert parse_sse(stream.body)[-1][1]["result"]["finish_reason"] == "length"


async def test_another_upstream_reason_is_passed_on_and_stop_stays_stop(app_url, fetch):
    async with FakeOpenAI(replies=[Reply(finish_reason="content_filter"), Reply()]) as upstream:
        url = app_url(model=OpenAIBackend(upstream.base_url, "m"))
        filtered = await fetch(url + "/model", "POST", PROMPT)
        assert json_of(filtered)["finish_reason"] == "content_filter"
        plain = await fetch(url + "/model", "POST", PROMPT)
        assert json_of(plain)["finish_reason"] == "stop"


async def test_prompt_tokens_chat_counts_the_prompt_of_an_answer_cut_at_its_cap(app_url, fetch):
    long_answer = [" word"] * 200
    replies = [Reply(chunks=long_answer, usage=None, delay=0.001), Reply(json_answer=True, usage=(17, 1))]
    async with FakeOpenAI(replies=replies) as upstream:
        url = app_url(model=OpenAIBackend(upstream.base_url, "m", prompt_tokens="chat"))
        answer = await fetch(url + "/model", "POST", {"prompt": "count me", "max_tokens": 5})
        body = json_of(answer)
        assert answer.code == 200 and body["finish_reason"] == "length"
        assert body["usage"]["prompt_tokens"] == 17  # the upstream's count, asked after the cut
        assert [request.body["stream"] for request in upstream.requests] == [True, False]


async def test_an_unreachable_upstream_is_named_and_costs_nothing(app_url, fetch):
    port = free_port()  # nothing listens there
    limiter = RateLimiter([Limit("request", 10, "minute"), Limit("token", 10_000, "minute")])
    url = app_url(model=OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m"), rate_limiter=limiter)
    answer = await fetch(url + "/model", "POST", {"prompt": "hello there"})
    assert answer.code == 502
    error = json_of(answer)["error"]
    assert "connection refused" in error and "Stream is closed" not in error
    stats = json_of(await fetch(url + "/rate-limit/stats/ip:127.0.0.1"))
    assert stats["usage"]["10000-tokens-per-60"] == 0  # refunded: no answer, no bill
    assert stats["reserved"]["10000-tokens-per-60"] == 0
    health = await fetch(url + "/health")
    assert health.code == 503
    body = json_of(health)
    assert body["upstream"] == "unreachable" and "connection refused" in body["upstream_error"]


async def test_a_dns_failure_is_named(app_url, fetch):
    url = app_url(model=OpenAIBackend("http://no-such-host.invalid/v1", "m"))
    answer = await fetch(url + "/model", "POST", {"prompt": "hi"})
    assert answer.code == 502 and "DNS lookup failed" in json_of(answer)["error"]


async def test_health_says_ok_for_a_reachable_upstream(app_url, fetch):
    async with FakeOpenAI() as upstream:
        url = app_url("H", model=OpenAIBackend(upstream.base_url, "m"))
        health = await fetch(url + "/health")
        assert health.code == 200 and json_of(health) == {"status": "ok", "app": "H", "upstream": "ok"}


async def test_a_failure_after_text_is_still_billed(app_url, fetch):
    limiter = RateLimiter([Limit("token", 10_000, "minute")])
    async with FakeOpenAI(chunks=["Hel", "lo", " there"], error_after=2, usage=None) as upstream:
        url = app_url(model=OpenAIBackend(upstream.base_url, "m"), rate_limiter=limiter)
        answer = await fetch(url + "/model/stream", "POST", {"prompt": "hi"}, headers={"Accept": "text/event-stream"})
        assert parse_sse(answer.body)[-1][0] == "error"
        stats = json_of(await fetch(url + "/rate-limit/stats/ip:127.0.0.1"))
        assert stats["usage"]["10000-tokens-per-60"] > 0  # it got an answer, in part


async def test_a_tls_failure_is_named(app_url, fetch):
    async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # to a TLS hello
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = app_url(model=OpenAIBackend(f"https://127.0.0.1:{port}/v1", "m"))
        answer = await fetch(url + "/model", "POST", {"prompt": "hi"})
        assert answer.code == 502 and "TLS handshake failed" in json_of(answer)["error"]
    finally:
        server.close()


async def test_a_tool_forced_by_the_server_is_forced_on_the_first_call_only(app_url, fetch):
    """The llama.cpp recipe forces the tool with --extra-body: the agent must still end."""
    from monoai_tornado.agents import Agent, calculator
    from monoai_tornado.backends.base import CallOptions

    forced = {"tool_choice": {"type": "function", "function": {"name": "calculator"}}}
    replies = [Reply(chunks=[], tool_calls=[{"id": "c1", "name": "calculator", "arguments": '{"expression": "12*7"}'}]),
               Reply(chunks=["It is ", "84."])]
    async with FakeOpenAI(replies=replies) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m", defaults=CallOptions(extra=forced))
        url = app_url(model=backend, agents=[Agent("calc", backend, tools=[calculator], max_iterations=4)])
        answer = await fetch(url + "/agent/calc", "POST", {"prompt": "What is 12*7?"})
        result = json_of(answer)
        assert answer.code == 200 and result["response"] == "It is 84."
        assert [step["type"] for step in result["iterations"]] == ["model", "tool", "model"]
        first, second = (request.body for request in upstream.requests)
        assert first["tool_choice"] == forced["tool_choice"] and second["tool_choice"] == "none"
        # A client's own choice on /v1 stands, tool results or not.
        upstream.configure(chunks=["ok"])
        messages = [{"role": "user", "content": "x"},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "84"}]
        tools = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]
        chat = await fetch(url + "/v1/chat/completions", "POST", {"model": "m", "messages": messages, "tools": tools,
                                                                    "tool_choice": "required"})
        assert chat.code == 200 and upstream.requests[-1].body["tool_choice"] == "required"
