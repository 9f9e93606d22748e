"""The typed conversation: what every dialect parses into, and how it reaches an upstream."""
from __future__ import annotations

from monoai_tornado.chat_request import parse_chat_object
from monoai_tornado.conversation import Message, ModelInfo, RunResult, ToolCall, ToolChoice, ToolDefinition
from monoai_tornado.usage import Usage

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_a_chat_body_becomes_typed_turns_and_goes_upstream_as_it_came() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Rome?"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Forecast", "parameters": WEATHER}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "temperature": 0.5,
    }
    request = parse_chat_object(body).request
    assert request.model == "m"
    assert request.prompt == "Weather in Rome?"
    assert request.messages is not None
    system, user, assistant, tool = request.messages
    assert system == Message("system", "Be brief.")  # OpenAI's newer name, a system turn upstream
    assert assistant.tool_calls == (ToolCall("call_1", "weather", '{"city":"Rome"}'),)
    assert tool == Message("tool", "sunny", tool_call_id="call_1")
    assert request.tools == (ToolDefinition("weather", "Forecast", WEATHER),)
    assert request.tool_choice == ToolChoice("function", "weather")
    upstream = request.upstream_messages()
    assert upstream[2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]}
    assert upstream[3] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    assert request.tool_schemas() == [body["tools"][0]]
    options = request.call_options()
    assert options is not None and options.temperature == 0.5
    assert options.tool_choice is not None and options.tool_choice.to_openai() == body["tool_choice"]


def test_a_tool_without_parameters_declares_an_empty_object() -> None:
    assert ToolDefinition("now").to_openai() == {
        "type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}


def test_a_run_result_renders_part_one_results() -> None:
    usage = Usage(prompt_tokens=3, completion_tokens=2)
    model = RunResult("hi", "hello", usage, "stop", ModelInfo("demo", "monoai-demo"))
    assert model.to_result_dict() == {
        "prompt": "hi", "response": "hello", "model": {"provider": "demo", "name": "monoai-demo"},
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, "finish_reason": "stop"}
    agent = RunResult("hi", "done", usage, "length", extra={"iterations": [], "stopped": "max_iterations"})
    result = agent.to_result_dict()
    assert result["iterations"] == [] and result["stopped"] == "max_iterations"
    assert "model" not in result and result["finish_reason"] == "length"
    calls = RunResult("hi", "", usage, "tool_calls", tool_calls=(ToolCall("c", "f", "{}"),)).to_result_dict()
    assert calls["tool_calls"] == [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
