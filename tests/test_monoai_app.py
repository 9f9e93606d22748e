"""MonoAI objects passed straight to Application, as the spec's "Configurazione" expects."""
from __future__ import annotations

import asyncio

from tests.support.http import json_of
from tests.support.monoai_objects import AsyncModel, SyncAgent
from tests.support.ws_helpers import chunks_of, connect, read_until_end, send


async def test_monoai_model_and_agent_served_over_http_and_websocket(app_url, fetch):
    url = app_url("MonoAI", model=AsyncModel(delay=0.001), agents=[SyncAgent()])
    model = json_of(await fetch(url + "/model", "POST", {"prompt": "ciao"}))
    assert model["response"] == "async echo: ciao"
    assert model["usage"] == {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
    agent = json_of(await fetch(url + "/agent/researcher", "POST", {"prompt": "dogs"}))
    assert agent["response"] == "done: dogs"
    assert agent["iterations"] == [{"step": 1, "tool": "search", "output": "found"}]
    assert agent["usage"]["total_tokens"] > 0
    ws = await connect(url, "/agent/researcher/ws")
    await send(ws, {"prompt": "cats"})
    messages = await read_until_end(ws)
    assert chunks_of(messages) == "Thinking... done: cats"
    assert messages[-1]["result"]["iterations"] == [{"step": 1, "tool": "search", "output": "found"}]


async def test_concurrent_users_of_one_monoai_model_never_mix(app_url, fetch):
    url = app_url("MonoAI", model=AsyncModel(delay=0.001))

    async def one(i):
        ws = await connect(url, "/model/ws")
        await send(ws, {"prompt": f"user {i} text"})
        messages = await read_until_end(ws)
        ws.close()
        return i, messages

    for i, messages in await asyncio.gather(*(one(i) for i in range(10))):
        assert chunks_of(messages) == f"async echo: user {i} text" == messages[-1]["result"]["response"]


async def test_exception_inside_ask_is_502_with_its_message(app_url, fetch):
    url = app_url("MonoAI", model=AsyncModel(fail="quota exceeded"))
    response = await fetch(url + "/model", "POST", {"prompt": "x"})
    assert response.code == 502
    assert json_of(response)["code"] == "backend_error" and "quota exceeded" in json_of(response)["error"]
