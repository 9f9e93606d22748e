"""What an OpenAI-compatible upstream's failures become for our clients: JSON, SSE and WebSocket.

The server runs in the test's loop in front of the real test upstream (tests/support/fake_openai.py).
"""
from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.http import json_of, parse_sse
from tests.support.fake_openai import FakeOpenAI
from tests.support.ws_helpers import connect, read, send

SSE = {"Accept": "text/event-stream"}

#: (upstream status, upstream headers, our status, our code, our extra headers)
TABLE = [
    (400, {}, 400, "upstream_rejected", {}),
    (401, {}, 502, "backend_error", {}),
    (403, {}, 502, "backend_error", {}),
    (429, {"Retry-After": "12"}, 503, "upstream_busy", {"Retry-After": "12"}),
    (503, {}, 503, "upstream_busy", {"Retry-After": "1"}),
    (500, {}, 502, "backend_error", {}),
]


def backend_for(upstream: FakeOpenAI) -> OpenAIBackend:
    return OpenAIBackend(upstream.base_url, "m", api_key="sk-upstream-secret", first_token_timeout=5)


@pytest.mark.parametrize(("status", "headers", "ours", "code", "our_headers"), TABLE)
async def test_each_upstream_status_on_json_sse_and_websocket(app_url, fetch, status, headers, ours, code,
                                                              our_headers):
    message = "This model's maximum context length is 2048 tokens" if status == 400 else "nope"
    async with FakeOpenAI(status=status, error_message=message, error_headers=headers) as upstream:
        limiter = RateLimiter([Limit("request", 100, "minute")])
        url = app_url(model=backend_for(upstream), rate_limiter=limiter)
        for path, extra in (("/model", {}), ("/model/stream", SSE)):
            response = await fetch(url + path, "POST", {"prompt": "hi"}, headers=extra)
            body = json_of(response)  # a failure before the first event is plain JSON, SSE asked or not
            assert (response.code, body["code"], body["upstream_status"]) == (ours, code, status), path
            assert response.headers["Content-Type"].startswith("application/json")
            assert response.headers["x-ratelimit-limit-requests"] == "100"  # kept on the error
            for name, value in our_headers.items():
                assert response.headers[name] == value
            assert "sk-upstream-secret" not in response.body.decode()
            if status == 400:
                assert message in body["error"]
            if status in (401, 403):
                assert "credentials" in body["error"]
        ws = await connect(url, "/model/ws")
        await send(ws, {"prompt": "hi"})
        error = await read(ws)
        assert (error["code"], error["upstream_status"]) == (code, status)
        ws.close()


async def test_sse_headers_go_out_before_a_slow_first_token(app_url):
    async with FakeOpenAI(chunks=["late"], stall_after=0, stall=None) as upstream:  # silent until released
        limiter = RateLimiter([Limit("request", 100, "minute")])
        url = app_url(model=backend_for(upstream), rate_limiter=limiter, sse_header_hold=0.2)
        headers: list[str] = []

        async def release() -> None:  # once the upstream has the request (a loaded machine may be slow)
            await upstream.wait_until(lambda: bool(upstream.requests), 10)
            upstream.release()

        def on_header(line: str) -> None:
            headers.append(line)
            if line in ("\r\n", "\n"):  # the end of the headers: let the upstream answer now
                tasks.append(asyncio.ensure_future(release()))

        tasks: list[asyncio.Future[None]] = []

        request = HTTPRequest(url + "/model/stream", method="POST", body=json.dumps({"prompt": "x"}),
                              headers=SSE, header_callback=on_header, request_timeout=20)
        response = await AsyncHTTPClient().fetch(request)
        await asyncio.gather(*tasks)
    assert headers[0].startswith("HTTP/1.1 200")
    assert any(h.lower().startswith("x-ratelimit-remaining-requests") for h in headers)
    assert [name for name, _ in parse_sse(response.body)] == ["chunk", "complete"]
    assert not upstream.requests[0].closed_early


async def test_a_failure_after_the_first_event_is_an_error_event_under_200(app_url, fetch):
    async with FakeOpenAI(chunks=["half", " of it"], finish=False) as upstream:
        url = app_url(model=backend_for(upstream))
        response = await fetch(url + "/model/stream", "POST", {"prompt": "x"}, headers=SSE)
    assert response.code == 200
    events = parse_sse(response.body)
    assert [name for name, _ in events] == ["chunk", "chunk", "error"]
    assert events[-1][1]["code"] == "backend_error" and "finish_reason" in events[-1][1]["error"]


@pytest.mark.parametrize(("status", "headers", "ours", "code", "our_headers"), TABLE)
async def test_each_upstream_status_on_a_streamed_v1_request_is_its_own_status(app_url, fetch, status,
                                                                               headers, ours, code, our_headers):
    async with FakeOpenAI(status=status, error_message="nope", error_headers=headers) as upstream:
        limiter = RateLimiter([Limit("request", 100, "minute")])
        url = app_url(model=backend_for(upstream), rate_limiter=limiter)
        response = await fetch(url + "/v1/chat/completions", "POST",
                               {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    # As OpenAI answers: an error before the stream began is an HTTP status, not an event under 200.
    assert response.code == ours
    assert response.headers["Content-Type"].startswith("application/json")
    assert json_of(response)["error"]["code"] == code
    assert response.headers["x-ratelimit-limit-requests"] == "100"
    for name, value in our_headers.items():
        assert response.headers[name] == value


async def test_a_streamed_v1_answer_begins_with_the_role_chunk_in_the_first_write(app_url, fetch):
    async with FakeOpenAI(chunks=["Hel", "lo"]) as upstream:
        url = app_url(model=backend_for(upstream))
        response = await fetch(url + "/v1/chat/completions", "POST",
                               {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert response.code == 200
    events = [line[6:] for line in response.body.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    deltas = [json.loads(event)["choices"][0]["delta"] for event in events[:-1] if json.loads(event)["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert [delta.get("content") for delta in deltas[1:3]] == ["Hel", "lo"]
    assert sum(1 for delta in deltas if "role" in delta) == 1
