"""The WebSocket protocol of API.md on /model/ws (agents are covered with the agent tests)."""
from __future__ import annotations

import asyncio

import pytest

from monoai_tornado import DemoBackend
from tests.support.backends_for_tests import EchoBackend, ScriptedBackend
from tests.support.ws_helpers import chunks_of, connect, read, read_until_end, send


@pytest.fixture
def url(app_url):
    return app_url(model=DemoBackend(delay=0.001))


async def test_chunks_in_order_then_complete_equal_to_http_result(url, fetch):
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "Ciao WebSocket", "user_id": "u1"})
    messages = await read_until_end(ws)
    assert messages[-1]["type"] == "complete"
    chunk_messages = messages[:-1]
    assert len(chunk_messages) > 3
    assert all(m["type"] == "chunk" for m in chunk_messages)
    result = messages[-1]["result"]
    assert chunks_of(messages) == result["response"]
    assert set(result) == {"prompt", "response", "model", "usage", "finish_reason"}
    http_result = await fetch(url + "/model", "POST", {"prompt": "Ciao WebSocket"})
    import json
    assert json.loads(http_result.body)["response"] == result["response"]
    ws.close()


async def test_two_prompts_on_one_connection_run_in_order(url):
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "first prompt"})
    await send(ws, {"prompt": "second prompt"})
    first = await read_until_end(ws)
    second = await read_until_end(ws)
    assert first[-1]["result"]["prompt"] == "first prompt"
    assert "first prompt" in chunks_of(first)
    assert second[-1]["result"]["prompt"] == "second prompt"
    assert "second prompt" in chunks_of(second)
    ws.close()


async def test_cancel_stops_the_run_and_the_next_prompt_works(app_url):
    backend = ScriptedBackend([f"piece{i} " for i in range(200)], delay=0.01)
    url = app_url(model=backend)
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "long one"})
    first = await read(ws)
    assert first["type"] == "chunk"
    await send(ws, {"type": "cancel"})
    messages = await read_until_end(ws)
    assert messages[-1] == {"type": "cancelled"}
    assert backend.cancelled == 1
    assert backend.sent_pieces[-1] < 200
    backend.pieces, backend.delay = ["ok"], 0
    await send(ws, {"prompt": "next"})
    after = await read_until_end(ws)
    assert after[-1]["type"] == "complete" and after[-1]["result"]["response"] == "ok"
    ws.close()


async def test_cancel_with_nothing_running_is_an_error_not_a_close(url):
    ws = await connect(url, "/model/ws")
    await send(ws, {"type": "cancel"})
    assert (await read(ws))["code"] == "nothing_to_cancel"
    await send(ws, {"prompt": "still open"})
    assert (await read_until_end(ws))[-1]["type"] == "complete"


async def test_disconnect_mid_stream_cancels_the_backend_and_leaves_no_task(app_url):
    backend = ScriptedBackend([f"p{i} " for i in range(500)], delay=0.01)
    url = app_url(model=backend)
    before = {t for t in asyncio.all_tasks()}
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "go"})
    assert (await read(ws))["type"] == "chunk"
    ws.close()
    for _ in range(200):
        if backend.cancelled:
            break
        await asyncio.sleep(0.01)
    assert backend.cancelled == 1
    assert backend.sent_pieces[-1] < 500
    for _ in range(100):
        leftover = {t for t in asyncio.all_tasks() if t not in before and t is not asyncio.current_task()
                    and not t.done()}
        if not leftover:
            break
        await asyncio.sleep(0.01)
    assert not leftover, leftover


async def test_invalid_json_then_valid_prompt_on_same_connection(url):
    ws = await connect(url, "/model/ws")
    await ws.write_message("{not json")
    assert (await read(ws))["code"] == "invalid_json"
    await send(ws, [1, 2])
    assert (await read(ws))["code"] == "invalid_json"
    await send(ws, {"prompt": "  "})
    assert (await read(ws))["code"] == "missing_prompt"
    await send(ws, {"prompt": "valid now"})
    assert (await read_until_end(ws))[-1]["type"] == "complete"


async def test_backend_failure_is_an_error_message_and_connection_stays(app_url):
    backend = ScriptedBackend(["a", "b", "c"], failure="error", fail_after=1)
    url = app_url(model=backend)
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "x"})
    messages = await read_until_end(ws)
    assert messages[-1]["code"] == "backend_error"
    backend.failure = None
    await send(ws, {"prompt": "y"})
    assert (await read_until_end(ws))[-1]["result"]["response"] == "abc"


@pytest.mark.parametrize("message,code,close_code", [
    (b"\x00\x01binary", "unsupported_data", 1003),
    ('{"prompt": "' + "x" * 1500 + '"}', "message_too_big", 1009),  # over the limit, under twice it
], ids=["binary", "oversized"])
async def test_a_refused_message_gets_its_error_then_the_close_code(app_url, message, code, close_code):
    url = app_url(max_ws_message_size=1000)
    ws = await connect(url, "/model/ws")
    await ws.write_message(message, binary=isinstance(message, bytes))
    error = await read(ws)
    assert error["code"] == code
    assert await read(ws) is None
    assert ws.close_code == close_code


async def test_far_oversized_message_is_closed_by_the_protocol_with_1009(app_url):
    url = app_url(max_ws_message_size=1000)
    ws = await connect(url, "/model/ws")
    await send(ws, {"prompt": "x" * 50_000})
    assert await read(ws) is None
    assert ws.close_code == 1009


async def test_restricted_origin_is_refused(app_url):
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    url = app_url(cors_origins=["https://good.example"])
    ws_url = url.replace("http://", "ws://") + "/model/ws"
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(HTTPRequest(ws_url, headers={"Origin": "https://evil.example"}))
    assert refused.value.code == 403
    ws = await websocket_connect(HTTPRequest(ws_url, headers={"Origin": "https://good.example"}))
    await send(ws, {"prompt": "hi"})
    assert (await read_until_end(ws))[-1]["type"] == "complete"


async def test_hundred_concurrent_connections_never_mix(app_url):
    url = app_url(model=EchoBackend())

    async def one(i):
        ws = await connect(url, "/model/ws")
        prompt = f"conn {i} " + " ".join(f"t{i}_{j}" for j in range(30))
        await send(ws, {"prompt": prompt})
        messages = await read_until_end(ws, timeout=30)
        ws.close()
        return prompt, messages

    for prompt, messages in await asyncio.gather(*(one(i) for i in range(100))):
        assert messages[-1]["type"] == "complete"
        assert chunks_of(messages) == prompt == messages[-1]["result"]["response"]


async def test_every_model_chunk_is_its_own_message(app_url):
    """``--demo-chunks 16 --demo-chunk-chars 3`` at 0 delay: 16 chunk messages of 3 characters."""
    url = app_url(model=DemoBackend(delay=0, chunks=16, chunk_chars=3))
    ws = await connect(url, "/model/ws")
    for _ in range(3):
        await send(ws, {"prompt": "count my chunks"})
        messages = await read_until_end(ws)
        chunks = [m["content"] for m in messages if m.get("type") == "chunk"]
        assert len(chunks) == 16 and all(len(c) == 3 for c in chunks)
        assert "".join(chunks) == messages[-1]["result"]["response"]
    ws.close()


@pytest.mark.slow  # takes a second or more
async def test_a_reader_that_stops_reading_gets_the_waiting_chunks_joined(app_url):
    """Chunks made while the kernel buffer is full go out joined; nothing is lost or reordered."""
    pieces = [f"word{i:05d} " * 400 for i in range(2000)]  # 2000 chunks, 8.8 MB: more than the kernel holds
    backend = ScriptedBackend(pieces, usage=(3, 3))
    url = app_url(model=backend)
    ws = await connect(url, "/model/ws", max_message_size=64 * 1024 * 1024)
    await send(ws, {"prompt": "a long answer", "max_tokens": 10**7})
    await asyncio.sleep(1.0)  # read nothing meanwhile: the socket's buffers fill up
    messages = await read_until_end(ws, timeout=30)
    chunk_messages = [m for m in messages if m.get("type") == "chunk"]
    assert messages[-1]["type"] == "complete"
    assert chunks_of(messages) == "".join(pieces) == messages[-1]["result"]["response"]
    assert 1 <= len(chunk_messages) < len(pieces)  # some were joined while the reader slept
    ws.close()
