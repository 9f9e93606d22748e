"""Agents over HTTP, SSE and WebSocket: results with iterations, steps streamed, errors."""
from __future__ import annotations

import pytest

from monoai_tornado import DemoBackend
from monoai_tornado.agents import Agent, default_agents, tool
from monoai_tornado.cli import load_object
from tests.support.http import json_of, parse_sse
from tests.support.ws_helpers import chunks_of, connect, read, read_until_end, send


@pytest.fixture
def url(app_url):
    backend = DemoBackend(delay=0)
    return app_url(model=backend, agents=default_agents(backend))


@pytest.fixture
def shop_url(app_url):
    """The shop agent of examples/agent_with_tools.py, loaded as ``--agents`` names it, served alone."""
    build_agents = load_object("examples.agent_with_tools:build_agents")
    return app_url("Shop", model=None, agents=build_agents(DemoBackend(delay=0)))


def assert_calculator_run(result):
    assert result["prompt"] == "what is 12*(3+4)?"
    assert result["response"] == "12*(3+4) = 84."
    kinds = [step["type"] for step in result["iterations"]]
    assert kinds == ["model", "tool", "model"]
    tool_step = result["iterations"][1]
    assert (tool_step["name"], tool_step["arguments"], tool_step["output"], tool_step["error"]) == \
        ("calculator", {"expression": "12*(3+4)"}, 84, None)
    model_usage = [step["usage"] for step in result["iterations"] if step["type"] == "model"]
    assert result["usage"]["total_tokens"] == sum(u["total_tokens"] for u in model_usage)


@pytest.mark.parametrize("path", ["/agent/assistant", "/agent/assistant/stream"])
async def test_agent_result_over_http(url, fetch, path):
    response = await fetch(url + path, "POST", {"prompt": "what is 12*(3+4)?"})
    assert response.code == 200
    result = json_of(response)
    assert set(result) == {"prompt", "response", "iterations", "usage", "finish_reason"}
    assert result["finish_reason"] == "stop"
    assert_calculator_run(result)


async def test_agent_over_sse_streams_text_and_steps(url, fetch):
    response = await fetch(url + "/agent/assistant/stream", "POST", {"prompt": "what is 12*(3+4)?"},
                           headers={"Accept": "text/event-stream"})
    events = parse_sse(response.body)
    names = [name for name, _ in events]
    assert names[-1] == "complete"
    steps = [data["step"]["type"] for name, data in events if name == "step"]
    assert steps == ["model", "tool_started", "tool", "model"]
    assert_calculator_run(events[-1][1]["result"])


async def test_agent_over_websocket_streams_text_and_steps(url):
    ws = await connect(url, "/agent/assistant/ws")
    await send(ws, {"prompt": "what is 12*(3+4)?"})
    messages = await read_until_end(ws)
    assert messages[-1]["type"] == "complete"
    assert_calculator_run(messages[-1]["result"])
    steps = [m["step"]["type"] for m in messages if m.get("type") == "step"]
    assert steps == ["model", "tool_started", "tool", "model"]
    contents = "".join(s["content"] for s in messages[-1]["result"]["iterations"] if s["type"] == "model")
    assert chunks_of(messages) == contents


async def test_unknown_agent_is_404_over_http(url, fetch):
    for path in ["/agent/nobody", "/agent/nobody/stream"]:
        response = await fetch(url + path, "POST", {"prompt": "x"})
        assert response.code == 404 and json_of(response)["code"] == "not_found"


async def test_unknown_agent_closes_the_websocket_with_1008(url):
    ws = await connect(url, "/agent/nobody/ws")
    error = await read(ws)
    assert error["code"] == "not_found"
    assert await read(ws) is None
    assert ws.close_code == 1008


async def test_agents_listing(url, fetch):
    agents = json_of(await fetch(url + "/agents"))["agents"]
    assert [a["name"] for a in agents] == ["assistant"]
    assert {"calculator", "current_utc_time"} <= {t["name"] for t in agents[0]["tools"]}


async def test_a_raising_tool_is_an_error_step_not_a_500(app_url, fetch):
    @tool
    def calculator(expression: str) -> float:
        """Always broken."""
        raise RuntimeError("calculator is on fire")

    backend = DemoBackend(delay=0)
    url = app_url(model=None, agents=[Agent("fragile", backend, tools=[calculator])])
    response = await fetch(url + "/agent/fragile", "POST", {"prompt": "what is 2+2?"})
    assert response.code == 200
    result = json_of(response)
    tool_step = next(s for s in result["iterations"] if s["type"] == "tool")
    assert "calculator is on fire" in tool_step["error"]
    assert (await fetch(url + "/model", "POST", {"prompt": "x"})).code == 404  # agents only: no model paths


async def test_example_agents_load_from_the_command_line_spec(shop_url, fetch):
    result = json_of(await fetch(shop_url + "/agent/shop", "POST", {"prompt": "what is 3*19.99?"}))
    assert result["response"] == "3*19.99 = 59.97."


@pytest.mark.parametrize(("prompt", "item", "answer"), [
    ("what is the price of bread?", "bread", "The price_of tool returned 2.25."),
    ("price_of coffee", "coffee", "The price_of tool returned 7.9."),
    ('Look up the unit price of "apple" in the shop', "apple", "The price_of tool returned 0.5."),
])
async def test_demo_model_calls_the_users_own_tool_the_prompt_mentions(shop_url, fetch, prompt, item, answer):
    result = json_of(await fetch(shop_url + "/agent/shop", "POST", {"prompt": prompt}))
    tool_steps = [step for step in result["iterations"] if step["type"] == "tool"]
    assert [(step["name"], step["arguments"], step["error"]) for step in tool_steps] == [
        ("price_of", {"item": item}, None)]
    assert result["response"] == answer


async def test_demo_model_reports_a_users_tool_failing(shop_url, fetch):
    result = json_of(await fetch(shop_url + "/agent/shop", "POST", {"prompt": "what is the price of caviar?"}))
    assert "no such item: caviar" in result["response"]


async def test_default_assistant_counts_words_when_asked(url, fetch):
    result = json_of(await fetch(url + "/agent/assistant", "POST", {"prompt": 'count the words in "one two three"'}))
    assert result["response"] == "The word_count tool returned 3."
