"""``/v1/responses`` in process: bad input and abuse are clear 4xx in OpenAI's shape, never a 5xx;
the stored responses stay bounded (long chains, floods); the stores themselves (memory, Redis)."""
from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from monoai_tornado.dialects.responses import MAX_CONVERSATION_ITEMS
from monoai_tornado.dialects.responses_store import MemoryResponseStore, RedisResponseStore, StoredResponse
from monoai_tornado.ratelimit import Limit, RateLimiter
from tests.support.http import json_of, parse_sse
from tests.support.ratelimit_fixtures import REDIS_URL, delete_prefix, need_redis
from tests.support.ws_helpers import connect, read, send

MODEL = "monoai-demo"


def user_item(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def record(user: str, items: int, response_id: str | None = None) -> StoredResponse:
    """What a long chain leaves in the store: one record holding the conversation's items."""
    response_id = response_id or f"resp_{uuid.uuid4().hex}"
    conversation = tuple(user_item(f"turn {i}") for i in range(items))
    return StoredResponse(response_id, user, 0, {"id": response_id, "object": "response"}, conversation)


BAD_BODIES = [
    ({"input": "hi"}, "invalid_json"),
    ({"model": MODEL, "input": 42}, "invalid_json"),
    ({"model": MODEL, "input": [42]}, "invalid_json"),
    ({"model": MODEL, "input": [{"role": "tool", "content": "x"}]}, "invalid_json"),
    ({"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "invalid_json"),
    ({"model": MODEL, "input": [{"type": "function_call", "name": "f"}]}, "invalid_json"),
    ({"model": MODEL, "input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}, "invalid_json"),
    ({"model": MODEL, "input": [{"type": "item_reference", "id": "x"}]}, "invalid_json"),
    ({"model": MODEL, "input": []}, "missing_prompt"),
    ({"model": MODEL}, "missing_prompt"),
    ({"model": MODEL, "input": "hi", "tools": [{"type": "web_search"}]}, "unsupported_tool"),
    ({"model": MODEL, "input": "hi", "tools": [{"type": "file_search", "vector_store_ids": []}]},
     "unsupported_tool"),
    ({"model": MODEL, "input": "hi", "tools": [{"type": "function"}]}, "invalid_json"),
    ({"model": MODEL, "input": "hi", "tool_choice": "sometimes"}, "invalid_json"),
    ({"model": MODEL, "input": "hi", "max_output_tokens": 0}, "invalid_json"),
    ({"model": MODEL, "input": "hi", "temperature": 9}, "invalid_json"),
    ({"model": MODEL, "input": "hi", "store": "yes"}, "invalid_json"),
    ({"model": MODEL, "input": "hi", "metadata": {"k": 1}}, "invalid_json"),
    ({"model": MODEL, "input": "hi", "user": ["x"]}, "invalid_user_id"),
    ({"model": MODEL, "input": "hi", "previous_response_id": "resp_nope"}, "previous_response_not_found"),
    ({"model": MODEL, "input": "hi", "previous_response_id": "../../etc"}, "previous_response_not_found"),
    ({"model": MODEL, "input": [user_item("x")] * (MAX_CONVERSATION_ITEMS + 1)}, "conversation_too_long"),
    ({"model": "gpt-nothing", "input": "hi"}, "model_not_found"),
]


@pytest.mark.parametrize("body,code", BAD_BODIES, ids=[code + str(i) for i, (_, code) in enumerate(BAD_BODIES)])
async def test_bad_input_is_a_4xx_in_openais_shape(app_url: Any, fetch: Any, body: dict[str, Any], code: str) -> None:
    base = app_url(max_body_size=4 * 1024 * 1024)
    answer = await fetch(base + "/v1/responses", "POST", body)
    error = json_of(answer)["error"]
    assert 400 <= answer.code < 500 and error["code"] == code
    assert error["type"] in ("invalid_request_error", "not_found_error") and error["message"]
    message = error["message"]
    assert message.count("{") == message.count("}"), message  # the shape it names reads as JSON


async def test_not_json_and_unknown_ids_are_refused_plainly(url: str, fetch: Any) -> None:
    answer = await fetch(url + "/v1/responses", "POST", "{not json")
    assert answer.code == 400 and json_of(answer)["error"]["code"] == "invalid_json"
    for method in ("GET", "DELETE"):
        for response_id in ("resp_unknown", "x" * 300, "%00"):
            answer = await fetch(f"{url}/v1/responses/{response_id}", method)
            assert answer.code == 404 and json_of(answer)["error"]["type"] == "not_found_error"
    assert (await fetch(url + "/v1/responses")).code == 405  # GET without a WebSocket handshake


async def test_a_long_chain_stays_bounded_and_is_refused_plainly(make_app: Any, serve: Any, fetch: Any) -> None:
    store = MemoryResponseStore()
    base = serve(make_app(responses_store=store))
    # A chain of 10,000 responses leaves its conversation in its last record: past the bound, refused.
    await store.put(record("alice", MAX_CONVERSATION_ITEMS, "resp_long"))
    await store.put(record("alice", 500, "resp_shorter"))
    body = {"model": MODEL, "input": "and then?", "user": "alice"}
    refused = await fetch(base + "/v1/responses", "POST", {**body, "previous_response_id": "resp_long"})
    assert refused.code == 400 and json_of(refused)["error"]["code"] == "conversation_too_long"
    went_on = await fetch(base + "/v1/responses", "POST", {**body, "previous_response_id": "resp_shorter"})
    assert went_on.code == 200
    # a chain made turn by turn: each turn is one read of the last record, however long the chain
    previous = json_of(went_on)["id"]
    for _ in range(30):
        answer = await fetch(base + "/v1/responses", "POST", {**body, "previous_response_id": previous})
        assert answer.code == 200, answer.body
        previous = json_of(answer)["id"]
    last = await store.get("alice", previous)
    assert last is not None and len(last.items) == 500 + 2 * 31


async def test_a_flood_of_stored_responses_is_bounded_and_the_users_limits_hold(make_app: Any, serve: Any,
                                                                                   fetch: Any) -> None:
    store = MemoryResponseStore(max_per_user=20)
    limiter = RateLimiter([Limit("request", 60, "day")])
    base = serve(make_app(responses_store=store, rate_limiter=limiter))
    ids, statuses = [], []
    for _ in range(70):
        answer = await fetch(base + "/v1/responses", "POST", {"model": MODEL, "input": "flood", "user": "mallory"})
        statuses.append(answer.code)
        if answer.code == 200:
            ids.append(json_of(answer)["id"])
    assert statuses.count(200) == 60 and set(statuses[60:]) == {429}
    assert json_of(answer)["error"]["type"] == "rate_limit_error"
    assert len(store) == 20  # the user's oldest went first
    first = await fetch(f"{base}/v1/responses/{ids[0]}?user=mallory")
    latest = await fetch(f"{base}/v1/responses/{ids[-1]}?user=mallory")
    assert first.code == 404 and latest.code == 200
    await store.put(record("someone", 10))
    assert await store.get("mallory", ids[-1]) is not None  # other users do not evict each other


async def test_the_memory_store_is_bounded_in_bytes() -> None:
    store = MemoryResponseStore(max_bytes=20_000)
    for index in range(50):
        await store.put(record(f"user{index}", 20))
    assert store.bytes <= 20_000 and 0 < len(store) < 50
    assert await store.get("user49", "resp_x") is None


async def test_streamed_events_and_errors_after_the_start(app_url: Any, fetch: Any) -> None:
    base = app_url()
    answer = await fetch(base + "/v1/responses", "POST", {"model": MODEL, "input": "stream", "stream": True})
    events = parse_sse(answer.body)
    assert [name for name, _ in events] == [data["type"] for _, data in events]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[-1][0] == "response.completed" and events[-1][1]["response"]["status"] == "completed"


async def test_websocket_mode_refuses_bad_messages_plainly(url: str) -> None:
    ws = await connect(url, "/v1/responses")
    await send(ws, {"type": "response.cancel"})
    error = await read(ws)
    assert error["type"] == "error" and error["code"] == "invalid_json" and error["error"]["code"] == "invalid_json"
    await send(ws, {"type": "response.create", "model": MODEL, "input": "x", "tools": [{"type": "computer"}]})
    assert (await read(ws))["code"] == "unsupported_tool"
    ws.write_message("not json")
    assert (await read(ws))["status"] == 400
    ws.write_message(b"\x00binary", binary=True)
    refused = await read(ws)
    assert refused["type"] == "error" and refused["code"] == "unsupported_data"
    assert await ws.read_message() is None  # then closed (1003)
    ws = await connect(url, "/v1/responses")
    await send(ws, {"type": "response.create", "model": MODEL, "input": "still here"})
    events = []
    while not events or events[-1]["type"] != "response.completed":
        events.append(await read(ws))
    assert events[0]["sequence_number"] == 0 and "still here" in events[-1]["response"]["output_text"]
    ws.close()


@pytest.mark.redis
async def test_the_redis_store_keeps_records_per_user_bounded_with_a_ttl() -> None:
    need_redis()
    prefix = f"test:responses:{uuid.uuid4().hex}:"
    store = RedisResponseStore(REDIS_URL, prefix=prefix, max_per_user=5, ttl=3600)
    try:
        kept = [record("dora", 3) for _ in range(8)]
        for item in kept:
            await store.put(item)
        assert await store.get("dora", kept[0].id) is None and await store.get("dora", kept[2].id) is None
        found = await store.get("dora", kept[-1].id)
        assert found == kept[-1]
        assert await store.get("eve", kept[-1].id) is None and not await store.delete("eve", kept[-1].id)
        assert await store.delete("dora", kept[-1].id) and await store.get("dora", kept[-1].id) is None
        assert await store.get("dora", "resp_../../x") is None
        ttl = await store._redis.ttl(store._key("dora", kept[-2].id))
        assert 0 < ttl <= 3600
        assert json.loads(await store._redis.get(store._key("dora", kept[-2].id)))["user"] == "dora"
    finally:
        await store.aclose()
        delete_prefix(REDIS_URL, prefix)


async def test_websocket_mode_holds_the_users_limits_as_model_ws_does(make_app: Any, serve: Any) -> None:
    limiter = RateLimiter([Limit("request", 2, "day")])
    base = serve(make_app(rate_limiter=limiter))
    ws = await connect(base, "/v1/responses")
    finals = []
    for turn in range(3):
        await send(ws, {"type": "response.create", "model": MODEL, "input": f"turn {turn}", "user": "zoe"})
        event = await read(ws)
        while event["type"] not in ("response.completed", "error"):
            event = await read(ws)
        finals.append(event)
    assert [e["type"] for e in finals] == ["response.completed", "response.completed", "error"]
    assert finals[-1]["status"] == 429 and finals[-1]["error"]["type"] == "rate_limit_error"
    assert finals[-1]["code"] == "rate_limited"
    ws.close()


async def test_an_agent_answers_through_the_responses_front(make_app: Any, serve: Any, fetch: Any) -> None:
    from monoai_tornado.agents import default_agents
    from monoai_tornado.backends.demo import DemoBackend

    backend = DemoBackend(delay=0)
    base = serve(make_app(model=backend, agents=default_agents(backend)))
    answer = json_of(await fetch(base + "/v1/responses", "POST", {"model": "agent/assistant",
                                                                  "input": "what is 12*(3+4)?"}))
    assert answer["status"] == "completed" and "84" in answer["output_text"]
    refused = await fetch(base + "/v1/responses", "POST", {"model": "agent/assistant", "input": "x",
                                                           "tools": [{"type": "function", "name": "f"}]})
    assert refused.code == 400 and json_of(refused)["error"]["code"] == "tools_not_supported"


async def test_websocket_mode_takes_the_handshakes_key(make_app: Any, serve: Any, fetch: Any, tmp_path: Any) -> None:
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    from monoai_tornado.keys import FileKeyStore, KeyRing, new_key

    store = FileKeyStore(tmp_path / "keys.json")
    alice, alice_record = new_key("alice")
    bob, bob_record = new_key("bob")
    for made in (alice_record, bob_record):
        await store.add(made)
    base = serve(make_app(keys=KeyRing(store, require=True)))

    def handshake(key: str | None) -> HTTPRequest:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return HTTPRequest(base.replace("http://", "ws://") + "/v1/responses", headers=headers)

    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(handshake(None))
    assert refused.value.code == 401

    async def create(ws: Any, **body: Any) -> dict[str, Any]:
        await send(ws, {"type": "response.create", "model": MODEL, **body})
        event = await read(ws)
        while event["type"] not in ("response.completed", "error", "response.failed"):
            event = await read(ws)
        return event

    as_alice = await websocket_connect(handshake(alice))
    made = (await create(as_alice, input="mine", user="bob"))["response"]  # the key's user, not the body's
    mine = await fetch(f"{base}/v1/responses/{made['id']}", headers={"Authorization": f"Bearer {alice}"})
    assert mine.code == 200 and json_of(mine)["id"] == made["id"]
    as_bob = await websocket_connect(handshake(bob))
    refused_event = await create(as_bob, input="yours?", previous_response_id=made["id"])
    assert refused_event["type"] == "error" and refused_event["code"] == "previous_response_not_found"
    as_alice.close()
    as_bob.close()
