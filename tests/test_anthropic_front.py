"""The Anthropic Messages front through the official ``anthropic`` SDK, against a real server
process (``--backend openai``) in front of the test's own OpenAI-compatible upstream."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.processes import Servers, call

anthropic = pytest.importorskip("anthropic")

pytestmark = [pytest.mark.process, pytest.mark.slow]

USER = [{"role": "user", "content": "Hello"}]
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def server_for():
    servers = Servers("--backend", "openai", "--model", "test", "--no-agents", "--log-level", "warning",
                      env={"PATH": "/usr/bin:/bin"})
    yield lambda base_url, *args: servers("--base-url", base_url, *args)
    servers.stop_all()


def client(base: str, key: str = "any-key") -> Any:
    """The SDK as a user builds it (``x-api-key``), without retries: each answer is seen as it is."""
    return anthropic.AsyncAnthropic(base_url=base, api_key=key, max_retries=0, timeout=20)


async def test_a_message_and_what_reaches_the_upstream(server_for):
    async with FakeOpenAI(chunks=["Hi", " there"]) as upstream:
        sdk = client(server_for(upstream.base_url))
        message = await sdk.messages.create(
            model="test", max_tokens=50, system=[{"type": "text", "text": "Be brief."}], messages=USER,
            stop_sequences=["END"], metadata={"user_id": "alice"},
            extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 40})  # older SDKs' own arguments
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert [(block.type, block.text) for block in message.content] == [("text", "Hi there")]
    assert (message.model, message.stop_reason, message.stop_sequence) == ("test", "end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)  # the upstream's own counts
    sent = upstream.requests[0].body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert (sent["temperature"], sent["top_p"], sent["top_k"], sent["stop"], sent["max_tokens"]) == \
        (0.2, 0.9, 40, ["END"], 50)


async def test_a_streamed_message_comes_as_anthropic_events_in_order(server_for):
    async with FakeOpenAI(chunks=["One", " two", " three"]) as upstream:
        sdk = client(server_for(upstream.base_url))
        async with sdk.messages.with_streaming_response.create(model="test", max_tokens=50, messages=USER,
                                                               stream=True) as raw:
            lines = [line async for line in raw.iter_lines() if line]
        async with sdk.messages.stream(model="test", max_tokens=50, messages=USER) as helper:
            texts = [text async for text in helper.text_stream]
            final = await helper.get_final_message()
    names = [line.removeprefix("event: ") for line in lines[::2]]
    data = [json.loads(line.removeprefix("data: ")) for line in lines[1::2]]
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert [event["type"] for event in data] == names  # each data names its event
    start = data[0]["message"]
    assert (start["content"], start["stop_reason"], start["usage"]["output_tokens"]) == ([], None, 0)
    assert start["usage"]["input_tokens"] > 0 and start["id"].startswith("msg_")
    assert data[2] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert [event["delta"] for event in data[3:6]] == [{"type": "text_delta", "text": text}
                                                       for text in ("One", " two", " three")]
    assert data[6] == {"type": "content_block_stop", "index": 0}
    assert data[7]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert data[7]["usage"] == {"input_tokens": 11, "output_tokens": 7}  # the upstream's counts, at the end
    assert "".join(texts) == final.content[0].text == "One two three"
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == ("end_turn", 11, 7)


async def test_a_tool_round_trip(server_for):
    calls = [{"id": "call_a", "name": "get_weather", "arguments": '{"city": "Rome"}'},
             {"id": "call_b", "name": "get_weather", "arguments": '{"city": "Oslo"}'}]
    replies = [Reply(chunks=["Let me check."], tool_calls=calls), Reply(chunks=["Sunny in Rome, snow in Oslo."])]
    async with FakeOpenAI(replies=replies) as upstream:
        sdk = client(server_for(upstream.base_url))
        async with sdk.messages.stream(model="test", max_tokens=100, messages=USER, tools=[WEATHER],
                                       tool_choice={"type": "any"}) as stream:
            asked = await stream.get_final_message()
        assert asked.stop_reason == "tool_use"
        assert [block.type for block in asked.content] == ["text", "tool_use", "tool_use"]
        uses = asked.content[1:]
        assert [(use.id, use.name, use.input) for use in uses] == [
            ("toolu_call_a", "get_weather", {"city": "Rome"}), ("toolu_call_b", "get_weather", {"city": "Oslo"})]
        results = [{"type": "tool_result", "tool_use_id": use.id, "content": f"weather of {use.input['city']}"}
                   for use in uses]
        answer = await sdk.messages.create(
            model="test", max_tokens=100, tools=[WEATHER],
            messages=[*USER, {"role": "assistant", "content": [block.model_dump() for block in asked.content]},
                      {"role": "user", "content": results}])
    assert (answer.content[0].text, answer.stop_reason) == ("Sunny in Rome, snow in Oslo.", "end_turn")
    first, second = (request.body for request in upstream.requests)
    assert first["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["input_schema"], "description": "The weather in a city"}}]
    assert first["tool_choice"] == "required"
    assistant, *tool_turns = second["messages"][1:]
    assert [call["id"] for call in assistant["tool_calls"]] == ["call_a", "call_b"]  # the upstream's own ids
    assert [json.loads(call["function"]["arguments"]) for call in assistant["tool_calls"]] == \
        [{"city": "Rome"}, {"city": "Oslo"}]
    assert tool_turns == [{"role": "tool", "content": "weather of Rome", "tool_call_id": "call_a"},
                          {"role": "tool", "content": "weather of Oslo", "tool_call_id": "call_b"}]


async def test_max_tokens_reached(server_for):
    async with FakeOpenAI(chunks=[f"word{i} " for i in range(40)], usage=None) as upstream:
        sdk = client(server_for(upstream.base_url))
        message = await sdk.messages.create(model="test", max_tokens=5, messages=USER)
        async with sdk.messages.stream(model="test", max_tokens=5, messages=USER) as stream:
            streamed = await stream.get_final_message()
    for answer in (message, streamed):
        assert answer.stop_reason == "max_tokens" and answer.usage.output_tokens == 5
        assert 0 < len(answer.content[0].text) < len("".join(f"word{i} " for i in range(40)))
    assert upstream.requests[0].body["max_tokens"] == 5


async def test_count_tokens_is_what_admission_reserves(server_for):
    conversation = {"model": "test", "system": "You count.", "messages": [
        {"role": "user", "content": "How many tokens is this?"}, {"role": "assistant", "content": "Let me see."},
        {"role": "user", "content": [{"type": "text", "text": "Count them all, please."}]}]}
    async with FakeOpenAI(stall_after=0, stall=None) as upstream:
        base = server_for(upstream.base_url, "--token-limit", "100000/minute")
        sdk = client(base)
        counted = await sdk.messages.count_tokens(**conversation)
        stream = await sdk.messages.create(max_tokens=20, stream=True, **conversation)
        await upstream.wait_until(lambda: len(upstream.requests) == 1)
        _, stats = call(base + "/rate-limit/stats/ip:127.0.0.1")
        upstream.release()
        assert [event.type async for event in stream][-1] == "message_stop"
    assert counted.input_tokens > 0
    assert list(stats["usage"].values()) == [counted.input_tokens + 20]  # reserved: the prompt and the cap


async def test_each_error_class_of_the_sdk(server_for):
    async with FakeOpenAI(stall_after=0, stall=None) as upstream:
        base = server_for(upstream.base_url, "--limit", "2/hour", "--max-concurrent-runs", "1",  # (a minute window may end mid-test)
                          "--user-validator", "operator:not_", "--reject-invalid-users")
        sdk = client(base)
        with pytest.raises(anthropic.BadRequestError) as bad:
            await sdk.messages.create(model="test", max_tokens=0, messages=USER)
        assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"
        assert bad.value.body["error"]["message"].startswith("Field 'max_tokens' must be a positive integer")
        with pytest.raises(anthropic.NotFoundError) as missing:
            await sdk.messages.create(model="claude-nope", max_tokens=5, messages=USER)
        assert missing.value.body["error"]["type"] == "not_found_error"
        with pytest.raises(anthropic.PermissionDeniedError):  # the validator refuses every user id here
            await sdk.messages.create(model="test", max_tokens=5, messages=USER, metadata={"user_id": "bob"})
        running = await sdk.messages.create(model="test", max_tokens=5, messages=USER, stream=True)
        await upstream.wait_until(lambda: len(upstream.requests) == 1)
        with pytest.raises(anthropic.OverloadedError) as overloaded:
            await sdk.messages.create(model="test", max_tokens=5, messages=USER)
        assert overloaded.value.status_code == 529 and overloaded.value.body["error"]["type"] == "overloaded_error"
        upstream.release()
        assert [event.type async for event in running][-1] == "message_stop"
        upstream.configure(stall_after=None)
        await sdk.messages.create(model="test", max_tokens=5, messages=USER)
        with pytest.raises(anthropic.RateLimitError) as limited:
            await sdk.messages.create(model="test", max_tokens=5, messages=USER)
        assert int(limited.value.response.headers["retry-after"]) >= 1
        assert limited.value.body["error"]["type"] == "rate_limit_error"


async def test_a_wrong_key_is_an_authentication_error_and_a_good_one_works_as_x_api_key(server_for, tmp_path):
    keys = tmp_path / "keys.json"
    made = subprocess.run([sys.executable, "-m", "monoai_tornado", "keys", "create", "--user", "carol",
                           "--keys-file", str(keys)], capture_output=True, text=True, timeout=30, check=True)
    key = made.stdout.splitlines()[0]
    async with FakeOpenAI(chunks=["ok"]) as upstream:
        base = server_for(upstream.base_url, "--keys-file", str(keys), "--require-api-key")
        with pytest.raises(anthropic.AuthenticationError) as wrong:
            await client(base, "sk-mt-not-a-key").messages.create(model="test", max_tokens=5, messages=USER)
        assert wrong.value.body["error"]["type"] == "authentication_error"
        with pytest.raises(anthropic.AuthenticationError):
            await client(base, "sk-mt-not-a-key").messages.count_tokens(model="test", messages=USER)
        message = await client(base, key).messages.create(model="test", max_tokens=5, messages=USER)
        assert message.content[0].text == "ok"
        _, stats = call(base + "/rate-limit/stats/carol", key=key)  # the key's user was the identity
        assert "error" not in stats


async def test_an_upstream_failure_after_the_stream_began_is_an_error_event(server_for):
    async with FakeOpenAI(chunks=["a", "b", "c"], error_after=2, error_message="model crashed") as upstream:
        sdk = client(server_for(upstream.base_url))
        stream = await sdk.messages.create(model="test", max_tokens=50, messages=USER, stream=True)
        seen = []
        with pytest.raises(anthropic.APIStatusError) as failed:
            async for event in stream:
                seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta", "content_block_delta"]
    assert failed.value.body["type"] == "error" and failed.value.body["error"]["type"] == "api_error"
    assert "model crashed" in failed.value.body["error"]["message"]


async def test_a_client_that_leaves_mid_stream_cancels_the_upstream_call(server_for):
    async with FakeOpenAI(chunks=["first", "second"], stall_after=1, stall=None) as upstream:
        sdk = client(server_for(upstream.base_url))
        stream = await sdk.messages.create(model="test", max_tokens=50, messages=USER, stream=True)
        async for event in stream:
            if event.type == "content_block_delta":
                break
        await stream.close()
        await upstream.wait_until(lambda: upstream.closed_early, timeout=10)
    assert upstream.requests[0].pieces_sent == 1


def test_the_guides_sdk_example_streams_from_the_demo_model():
    """The guide's "Use it from Anthropic clients" snippet, as written, against ``python -m monoai_tornado``."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it from Anthropic clients", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    servers = Servers("--log-level", "warning")
    try:
        base = servers()
        port = base.rsplit(":", 1)[1]
        ran = subprocess.run([sys.executable, "-c", snippet.replace("8000", port)], capture_output=True, text=True,
                             timeout=60)
    finally:
        servers.stop_all()
    assert ran.returncode == 0, ran.stderr
    assert "demo model" in ran.stdout


async def test_claude_model_names_reach_a_model_through_an_alias(server_for, tmp_path):
    async with FakeOpenAI(chunks=["aliased"]) as upstream:
        config = tmp_path / "gateway.toml"
        config.write_text(f'[[models]]\nname = "chat"\nbase_url = "{upstream.base_url}"\nupstream_model = "qwen"\n\n'
                          '[routing]\naliases = { "claude-*" = "chat" }\n')
        servers = Servers("--config", str(config), "--no-agents", "--log-level", "warning")
        try:
            sdk = client(servers())
            message = await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=20, messages=USER)
            async with sdk.messages.stream(model="claude-haiku-4-5", max_tokens=20, messages=USER) as stream:
                streamed = await stream.get_final_message()
            with pytest.raises(anthropic.NotFoundError):
                await sdk.messages.create(model="gpt-4o", max_tokens=20, messages=USER)
        finally:
            servers.stop_all()
    assert (message.model, message.content[0].text) == ("chat", "aliased")  # the model that answered
    assert (streamed.model, streamed.content[0].text) == ("chat", "aliased")
    assert [request.body["model"] for request in upstream.requests] == ["qwen", "qwen"]


async def test_a_stop_sequence_the_upstream_names_is_the_stop_reason(server_for):
    async with FakeOpenAI(chunks=["one, two, "], stop_reason="three") as upstream:  # as vLLM tells it
        sdk = client(server_for(upstream.base_url))
        message = await sdk.messages.create(model="test", max_tokens=20, messages=USER, stop_sequences=["three"])
        async with sdk.messages.stream(model="test", max_tokens=20, messages=USER, stop_sequences=["three"]) as stream:
            streamed = await stream.get_final_message()
    for answer in (message, streamed):
        assert (answer.stop_reason, answer.stop_sequence, answer.content[0].text) == ("stop_sequence", "three",
                                                                                      "one, two, ")
    assert upstream.requests[0].body["stop"] == ["three"]
