"""The Anthropic codec on its own (a request in, the conversation out; a run in, Anthropic's
JSON and events out), and ``x-api-key`` taken wherever a Bearer key is, on a real app."""
from __future__ import annotations

import json
from typing import Any

import pytest

from monoai_tornado.conversation import Message, ModelInfo, RunResult, ToolCall, ToolChoice
from monoai_tornado.dialects.anthropic import MessageStream, message_object, parse_messages_object
from monoai_tornado.errors import InvalidJson, MissingPrompt
from monoai_tornado.usage import Usage
from tests.support.http import json_of
from tests.test_keys_http import Keys, keys, keys_app  # noqa: F401 (fixtures)

CONVERSATION: dict[str, Any] = {
    "model": "m", "max_tokens": 100, "system": [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Two."}],
    "messages": [
        {"role": "user", "content": "Weather in Rome and Oslo?"},
        {"role": "system", "content": "Mid-conversation rule."},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "two calls", "signature": "x"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_call_a", "name": "weather", "input": {"city": "Rome"}},
            {"type": "tool_use", "id": "toolu_01XYZ", "name": "weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_call_a", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_01XYZ", "content": [{"type": "text", "text": "snow"}],
             "is_error": False},
            {"type": "text", "text": "And tomorrow?", "cache_control": {"type": "ephemeral"}}]}],
    "tools": [{"name": "weather", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
    "tool_choice": {"type": "tool", "name": "weather"}, "thinking": {"type": "enabled"}, "unknown": 1,
}


def result(text: str = "", finish: str = "stop", calls: tuple[ToolCall, ...] = (),
           stop_sequence: str | None = None) -> RunResult:
    return RunResult("p", text, Usage(12, 5), finish, ModelInfo("openai-compatible", "m"), tool_calls=calls,
                     stop_sequence=stop_sequence)


def test_a_conversation_becomes_typed_turns_with_the_upstreams_ids():
    request = parse_messages_object(CONVERSATION).request
    calls = (ToolCall("call_a", "weather", '{"city": "Rome"}'), ToolCall("01XYZ", "weather", '{"city": "Oslo"}'))
    assert request.messages == (
        Message("system", "Rule one.\n\nTwo.\n\nMid-conversation rule."), Message("user", "Weather in Rome and Oslo?"),
        Message("assistant", "Checking.", tool_calls=calls),
        Message("tool", "sunny", tool_call_id="call_a"), Message("tool", "snow", tool_call_id="01XYZ"),
        Message("user", "And tomorrow?"))
    assert (request.prompt, request.max_tokens, request.model) == ("And tomorrow?", 100, "m")
    assert request.tool_choice == ToolChoice("function", "weather") and request.tools[0].name == "weather"


@pytest.mark.parametrize("change, message", [
    ({"max_tokens": None}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": "5"}, "max_tokens"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
    ({"messages": [{"role": "system", "content": [{"type": "image"}]}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "image blocks"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]},
     "'tool_use' blocks are not supported"),
    ({"system": [{"type": "image"}]}, "system"), ({"temperature": 1.5}, "temperature"), ({"top_k": 0}, "top_k"),
    ({"stop_sequences": "STOP"}, "stop_sequences"), ({"tools": [{"name": "web", "type": "web_search_20250305"}]},
                                                     "server tools"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice"), ({"tools": None}, "tool_choice needs tools"),
    ({"metadata": "alice"}, "metadata"), ({"stream": "yes"}, "stream"),
])
def test_each_malformed_field_is_a_400_that_names_it(change, message):
    body = {**CONVERSATION, **change}
    if change.get("max_tokens", 1) is None:
        del body["max_tokens"]
    with pytest.raises(InvalidJson) as refused:
        parse_messages_object(body)
    assert message in str(refused.value) and refused.value.status == 400


def test_no_messages_is_missing_prompt_and_count_tokens_needs_no_max_tokens():
    with pytest.raises(MissingPrompt):
        parse_messages_object({"model": "m", "max_tokens": 5, "messages": []})
    counted = parse_messages_object({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, counting=True)
    assert counted.request.max_tokens is None


@pytest.mark.parametrize("finish, matched, reason, sequence", [
    ("stop", None, "end_turn", None), ("length", None, "max_tokens", None), ("tool_calls", None, "tool_use", None),
    ("stop", "END", "stop_sequence", "END")])
def test_stop_reasons(finish, matched, reason, sequence):
    message = message_object(result("x", finish, stop_sequence=matched), "m")
    assert (message["stop_reason"], message["stop_sequence"]) == (reason, sequence)


def test_a_run_with_text_and_two_tool_calls_as_a_message_and_as_events():
    calls = (ToolCall("call_a", "weather", '{"city": "Rome"}'), ToolCall("call_b", "weather", "not json"))
    run = result("Checking.", "tool_calls", calls)
    message = message_object(run, "m", "msg_1")
    assert message == {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_call_a", "name": "weather", "input": {"city": "Rome"}},
        {"type": "tool_use", "id": "toolu_call_b", "name": "weather", "input": {}}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 5}}
    stream = MessageStream("m")
    text = stream.start(12) + stream.text("Check") + stream.text("ing.") + stream.finish(run)
    events = [(chunk.split("\n")[0][7:], json.loads(chunk.split("\n")[1][6:])) for chunk in text.split("\n\n") if chunk]
    assert all(name == data["type"] for name, data in events)
    assert [(name, data.get("index")) for name, data in events] == [
        ("message_start", None), ("ping", None), ("content_block_start", 0), ("content_block_delta", 0),
        ("content_block_delta", 0), ("content_block_stop", 0), ("content_block_start", 1), ("content_block_delta", 1),
        ("content_block_stop", 1), ("content_block_start", 2), ("content_block_delta", 2), ("content_block_stop", 2),
        ("message_delta", None), ("message_stop", None)]
    assert events[6][1]["content_block"] == {"type": "tool_use", "id": "toolu_call_a", "name": "weather", "input": {}}
    assert events[7][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":"Rome"}'}
    assert events[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                             "usage": {"input_tokens": 12, "output_tokens": 5}}


async def test_x_api_key_is_taken_wherever_a_bearer_key_is(keys_app, keys, serve, fetch):
    base = serve(keys_app(require=True))
    given = {"x-api-key": keys.bob, "Content-Type": "application/json"}
    prompt = await fetch(base + "/model", "POST", {"prompt": "hi"}, headers=given)
    chat = await fetch(base + "/v1/chat/completions", "POST",
                       {"model": "monoai-demo", "messages": [{"role": "user", "content": "hi"}]}, headers=given)
    messages = await fetch(base + "/v1/messages", "POST", {"model": "monoai-demo", "max_tokens": 10,
                                                           "messages": [{"role": "user", "content": "hi"}]},
                           headers=given)
    stats = await fetch(base + "/rate-limit/stats/bob", headers=given)  # a user's own key reads their stats
    assert [prompt.code, chat.code, messages.code, stats.code] == [200, 200, 200, 200]
    assert list(json_of(stats)["usage"].values()) == [3]  # the three prompts, billed to bob
    wrong = {"x-api-key": "sk-mt-wrong", "Content-Type": "application/json"}
    refused = await fetch(base + "/model", "POST", {"prompt": "hi"}, headers=wrong)
    assert (refused.code, json_of(refused)["code"]) == (401, "invalid_api_key")
    refused = await fetch(base + "/v1/messages", "POST", {"model": "monoai-demo", "max_tokens": 10,
                                                          "messages": [{"role": "user", "content": "hi"}]})
    assert refused.code == 401 and json_of(refused)["error"]["type"] == "authentication_error"
    assert "x-api-key" in json_of(refused)["error"]["message"]


def test_a_priced_runs_cost_is_in_the_message_and_in_message_delta():
    priced = RunResult("p", "ok", Usage(12, 5, cost_nanos=1234), "stop", ModelInfo("openai-compatible", "m"))
    assert message_object(priced, "m")["usage"] == {"input_tokens": 12, "output_tokens": 5, "cost_usd": 1.234e-06}
    stream = MessageStream("m")
    delta = [chunk for chunk in (stream.start(12) + stream.finish(priced)).split("\n\n") if "message_delta" in chunk]
    assert json.loads(delta[0].split("\n")[1][6:])["usage"] == {"input_tokens": 12, "output_tokens": 5,
                                                                "cost_usd": 1.234e-06}


async def test_a_big_prompts_count_is_the_same_in_count_tokens_and_message_start(app_url, fetch, counter):
    url = app_url()
    big = [{"role": "user", "content": "many words " * 20_000}]  # over what is counted on the event loop
    counted = await fetch(url + "/v1/messages/count_tokens", "POST", {"model": "monoai-demo", "messages": big})
    assert json_of(counted) == {"input_tokens": counter.count_messages(big)}
    streamed = await fetch(url + "/v1/messages", "POST", {"model": "monoai-demo", "max_tokens": 5, "stream": True,
                                                          "messages": big})
    events = [json.loads(line[6:]) for line in streamed.body.decode().split("\n") if line.startswith("data: ")]
    assert events[0]["message"]["usage"]["input_tokens"] == counter.count_messages(big)  # admission's count
    assert events[-2]["type"] == "message_delta" and events[-2]["usage"]["input_tokens"] > 20_000
