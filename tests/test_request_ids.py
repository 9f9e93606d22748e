"""Request ids and trace context: echoed on every answer, sent upstream, in the access log."""
from __future__ import annotations

import json
import re

import pytest

from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.money.ledger import FileLedger
from monoai_tornado.request_trace import RequestTrace, request_id_from, valid_traceparent
from tests.support.fake_openai import FakeOpenAI
from tests.support.http import json_of, parse_sse
from tests.support.ws_helpers import connect, read, read_until_end, send

MADE = re.compile(r"[0-9a-f]{32}")
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_client_request_id_is_echoed_and_a_missing_one_is_made(url, fetch):
    given = await fetch(url + "/model", method="POST", body={"prompt": "hi"}, headers={"X-Request-Id": "req-42.a:b"})
    assert given.code == 200 and given.headers["X-Request-Id"] == "req-42.a:b"
    made = await fetch(url + "/model", method="POST", body={"prompt": "hi"})
    other = await fetch(url + "/model", method="POST", body={"prompt": "hi"})
    assert MADE.fullmatch(made.headers["X-Request-Id"]) and made.headers["X-Request-Id"] != other.headers["X-Request-Id"]


@pytest.mark.parametrize("bad", ["has space", "x" * 129, 'quote"d', "semi;colon", "é"])
async def test_a_request_id_that_is_not_a_short_token_is_replaced(url, fetch, bad):
    answer = await fetch(url + "/model", method="POST", body={"prompt": "hi"},
                         headers={"X-Request-Id": bad.encode("utf-8").decode("latin-1")})
    assert answer.code == 200 and MADE.fullmatch(answer.headers["X-Request-Id"])


async def test_errors_sse_and_every_dialect_carry_the_id(url, fetch):
    headers = {"X-Request-Id": "rid-1"}
    bad_json = await fetch(url + "/model", method="POST", body="{nope", headers=headers)
    assert bad_json.code == 400 and bad_json.headers["X-Request-Id"] == "rid-1"
    missing = await fetch(url + "/nowhere", headers=headers)
    assert missing.code == 404 and missing.headers["X-Request-Id"] == "rid-1"
    sse = await fetch(url + "/model/stream", method="POST", body={"prompt": "hi"},
                      headers={**headers, "Accept": "text/event-stream"})
    assert sse.headers["X-Request-Id"] == "rid-1" and parse_sse(sse.body)[-1][0] == "complete"
    chat = await fetch(url + "/v1/chat/completions", method="POST", headers=headers,
                       body={"model": "monoai-demo", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.code == 200 and chat.headers["X-Request-Id"] == "rid-1"
    responses = await fetch(url + "/v1/responses", method="POST", headers=headers,
                            body={"model": "monoai-demo", "input": "hi"})
    assert responses.code == 200 and responses.headers["X-Request-Id"] == "rid-1"
    messages = await fetch(url + "/v1/messages", method="POST", headers=headers,
                           body={"model": "monoai-demo", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert messages.code == 200 and messages.headers["X-Request-Id"] == "rid-1"
    refused = await fetch(url + "/v1/messages", method="POST", headers=headers, body={"model": "monoai-demo"})
    assert refused.code == 400 and refused.headers["X-Request-Id"] == "rid-1"
    health = await fetch(url + "/health", headers=headers)
    assert health.headers["X-Request-Id"] == "rid-1"


async def test_a_browser_may_read_the_id(url, fetch):
    answer = await fetch(url + "/model", method="POST", body={"prompt": "hi"}, headers={"Origin": "http://page"})
    assert "X-Request-Id" in answer.headers["Access-Control-Expose-Headers"]


async def test_every_websocket_prompt_completes_with_its_own_id(url):
    ws = await connect(url, "/model/ws")
    ids = []
    for _ in range(2):
        await send(ws, {"prompt": "hi"})
        complete = (await read_until_end(ws))[-1]
        assert complete["type"] == "complete" and MADE.fullmatch(complete["request_id"])
        ids.append(complete["request_id"])
    ws.close()
    assert ids[0] != ids[1]


async def test_the_upstream_gets_the_id_and_the_clients_traceparent(app_url, fetch):
    async with FakeOpenAI() as upstream:
        url = app_url(model=OpenAIBackend(upstream.base_url, "test-model"))
        answer = await fetch(url + "/v1/chat/completions", method="POST",
                             headers={"X-Request-Id": "rid-up", "traceparent": PARENT, "tracestate": "k=v"},
                             body={"model": "test-model", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.code == 200 and json_of(answer)["choices"][0]["message"]["content"] == "Hello, world!"
        seen = {name.lower(): value for name, value in upstream.requests[0].headers.items()}
        assert seen["x-request-id"] == "rid-up" and seen["traceparent"] == PARENT and seen["tracestate"] == "k=v"
        plain = await fetch(url + "/model", method="POST", body={"prompt": "hi"})
        seen = {name.lower(): value for name, value in upstream.requests[1].headers.items()}
        assert seen["x-request-id"] == plain.headers["X-Request-Id"] and "traceparent" not in seen


def test_traceparents_follow_the_w3c_rules():
    assert valid_traceparent(PARENT) == PARENT
    for bad in ("", "junk", PARENT.upper(), "ff" + PARENT[2:], PARENT.replace("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 32),
                PARENT.replace("00f067aa0ba902b7", "0" * 16), PARENT + "-extra"):
        assert valid_traceparent(bad) is None, bad
    assert valid_traceparent("01" + PARENT[2:] + "-future") is not None  # a later version may add fields
    trace = RequestTrace.from_headers({"traceparent": "junk", "tracestate": "k=v"})
    assert trace.traceparent is None and trace.tracestate is None and "traceparent" not in trace.upstream_headers()
    assert request_id_from("ok") == "ok" and MADE.fullmatch(request_id_from("not ok"))


async def test_responses_websocket_mode_serves_one_response_after_another(url):
    ws = await connect(url, "/v1/responses")
    for turn in ("first", "second"):  # a turn whose bookkeeping failed would leave the socket busy
        await send(ws, {"type": "response.create", "model": "monoai-demo", "input": turn})
        events = [await read(ws)]
        while events[-1].get("type") not in ("response.completed", "error"):
            events.append(await read(ws))
        assert events[-1]["type"] == "response.completed" and turn in events[-1]["response"]["output_text"]
    ws.close()


async def test_the_usage_ledger_names_each_run_by_its_request_id(app_url, fetch, tmp_path):
    path = tmp_path / "usage.jsonl"
    url = app_url(usage_ledger=FileLedger(str(path)))
    given = await fetch(url + "/model", method="POST", body={"prompt": "hi"}, headers={"X-Request-Id": "rid-ledger"})
    made = await fetch(url + "/v1/chat/completions", method="POST",
                       body={"model": "monoai-demo", "messages": [{"role": "user", "content": "hi"}]})
    assert given.code == made.code == 200
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["rid-ledger", made.headers["X-Request-Id"]]
