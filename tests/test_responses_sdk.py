"""``/v1/responses``: the official ``openai`` SDK (``AsyncOpenAI``) against ``python -m monoai_tornado
--backend openai`` in front of a real upstream the test runs (tests/support/fake_openai.py)."""
from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.processes import Servers
from tests.support.ratelimit_fixtures import REDIS_URL, delete_prefix, need_redis
from tests.support.ws_helpers import connect, read, send

pytestmark = [pytest.mark.process, pytest.mark.slow]

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def servers() -> Iterator[Servers]:
    started = Servers("--backend", "openai", "--model", "test", "--no-agents", "--log-level", "warning")
    yield started
    started.stop_all()


def client_for(base: str, key: str = "not-checked") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=20)


def call_reply(turn: int, name: str = "get_weather", arguments: str = '{"city": "Rome"}') -> Reply:
    return Reply(chunks=(), tool_calls=[{"id": f"call_{turn}", "name": name, "arguments": arguments}])


async def test_a_string_input_answers_and_its_stream_comes_in_order(servers: Servers) -> None:
    async with FakeOpenAI(chunks=["Hel", "lo"]) as upstream:
        client = client_for(servers("--base-url", upstream.base_url))
        answer = await client.responses.create(model="test", input="Say hello", instructions="Be brief.")
        assert answer.object == "response" and answer.id.startswith("resp_") and answer.status == "completed"
        assert answer.output_text == "Hello" and answer.output[0].type == "message"
        assert (answer.usage.input_tokens, answer.usage.output_tokens, answer.usage.total_tokens) == (11, 7, 18)
        assert upstream.requests[0].body["messages"] == [{"role": "system", "content": "Be brief."},
                                                        {"role": "user", "content": "Say hello"}]

        stream = await client.responses.create(model="test", input="Again", stream=True)
        events = [event async for event in stream]
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert [e.type for e in events] == [
            "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
            "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
            "response.content_part.done", "response.output_item.done", "response.completed"]
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello"
        assert events[-1].response.id == events[0].response.id and events[-1].response.output_text == "Hello"


async def test_a_function_call_round_trip_continues_by_previous_response_id(servers: Servers) -> None:
    async with FakeOpenAI(replies=[call_reply(1)], chunks=["Sunny", " in Rome"]) as upstream:
        client = client_for(servers("--base-url", upstream.base_url))
        first = await client.responses.create(model="test", input="Weather in Rome?", tools=[WEATHER],
                                              instructions="Use the tools.")
        call = first.output[-1]
        assert call.type == "function_call" and call.name == "get_weather" and call.call_id == "call_1"
        assert call.arguments == '{"city": "Rome"}'
        assert upstream.requests[0].body["tools"][0]["function"]["name"] == "get_weather"

        second = await client.responses.create(
            model="test", previous_response_id=first.id, tools=[WEATHER],
            input=[{"type": "function_call_output", "call_id": "call_1", "output": "sunny, 24 C"}])
        assert second.output_text == "Sunny in Rome" and second.previous_response_id == first.id
        # the upstream got the earlier turns; the instructions were the first turn's only
        assert upstream.requests[1].body["messages"] == [
            {"role": "user", "content": "Weather in Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": '{"city": "Rome"}'}}]},
            {"role": "tool", "content": "sunny, 24 C", "tool_call_id": "call_1"}]


async def test_max_output_tokens_ends_the_response_incomplete(servers: Servers) -> None:
    words = [f"word{i} " for i in range(40)]
    async with FakeOpenAI(chunks=words, usage=None) as upstream:
        client = client_for(servers("--base-url", upstream.base_url))
        answer = await client.responses.create(model="test", input="Talk a lot", max_output_tokens=5)
        assert answer.status == "incomplete" and answer.incomplete_details.reason == "max_output_tokens"
        assert answer.usage.output_tokens <= 6 and answer.max_output_tokens == 5
        assert upstream.requests[0].body["max_tokens"] == 5
        stream = await client.responses.create(model="test", input="Talk a lot", max_output_tokens=5, stream=True)
        events = [event async for event in stream]
        assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"


def create_key(keys_file: Path, user: str) -> str:
    done = subprocess.run([sys.executable, "-m", "monoai_tornado", "keys", "create", "--user", user,
                           "--keys-file", str(keys_file)], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()[0]


async def test_get_and_delete_are_the_owners_only(servers: Servers, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    alice_key, bob_key = create_key(keys_file, "alice"), create_key(keys_file, "bob")
    async with FakeOpenAI(chunks=["Hi"]) as upstream:
        base = servers("--base-url", upstream.base_url, "--keys-file", str(keys_file), "--require-api-key")
        alice, bob = client_for(base, alice_key), client_for(base, bob_key)
        made = await alice.responses.create(model="test", input="remember me")
        fetched = await alice.responses.retrieve(made.id)
        assert fetched.id == made.id and fetched.output_text == "Hi"
        with pytest.raises(openai.NotFoundError):
            await bob.responses.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            await bob.responses.delete(made.id)
        with pytest.raises(openai.BadRequestError) as refused:
            await bob.responses.create(model="test", input="go on", previous_response_id=made.id)
        assert refused.value.code == "previous_response_not_found"
        await alice.responses.delete(made.id)
        with pytest.raises(openai.NotFoundError):
            await alice.responses.retrieve(made.id)
        unstored = await alice.responses.create(model="test", input="forget me", store=False)
        with pytest.raises(openai.NotFoundError):
            await alice.responses.retrieve(unstored.id)
        assert len(upstream.requests) == 2  # bob's refused continuation never reached the model


@pytest.mark.redis
async def test_two_processes_share_stored_responses_through_redis(servers: Servers) -> None:
    need_redis()
    prefix = f"test:responses:{uuid.uuid4().hex}:"
    try:
        async with FakeOpenAI(replies=[Reply(chunks=["first"])], chunks=["second"]) as upstream:
            shared = ("--base-url", upstream.base_url, "--redis-url", REDIS_URL, "--redis-prefix", prefix)
            one, two = client_for(servers(*shared)), client_for(servers(*shared))
            made = await one.responses.create(model="test", input="hello", user="carol")
            went_on = await two.responses.create(model="test", input="and then?", previous_response_id=made.id,
                                                 user="carol")
            assert went_on.output_text == "second"
            assert [m["content"] for m in upstream.requests[1].body["messages"]] == ["hello", "first", "and then?"]
            fetched = await two.with_options(default_query={"user": "carol"}).responses.retrieve(made.id)
            assert fetched.output_text == "first"
            with pytest.raises(openai.NotFoundError):  # another user (the client's address) has no such response
                await two.responses.retrieve(made.id)
    finally:
        delete_prefix(REDIS_URL, prefix)


async def test_websocket_mode_runs_a_ten_turn_tool_loop_on_one_connection(servers: Servers) -> None:
    replies = [call_reply(turn, "step", f'{{"n": {turn}}}') for turn in range(1, 10)]
    async with FakeOpenAI(replies=replies, chunks=["all", " done"]) as upstream:
        client = client_for(servers("--base-url", upstream.base_url))
        tool = {"type": "function", "name": "step", "parameters": {"type": "object", "properties": {}}}
        finals = []
        async with client.responses.connect() as connection:
            await connection.response.create(model="test", input="run ten steps", tools=[tool], store=False)
            for turn in range(1, 11):
                events = []
                async for event in connection:
                    events.append(event)
                    if event.type in ("response.completed", "response.failed", "error"):
                        break
                assert [e.sequence_number for e in events] == list(range(len(events)))
                final = events[-1].response
                finals.append(final)
                if turn < 10:
                    call = final.output[-1]
                    assert call.type == "function_call" and call.call_id == f"call_{turn}"
                    await connection.response.create(  # only the new item: the connection kept the rest
                        model="test", previous_response_id=final.id, tools=[tool], store=False,
                        input=[{"type": "function_call_output", "call_id": call.call_id, "output": f"ok {turn}"}])
        assert finals[-1].output_text == "all done" and len(upstream.requests) == 10
        messages = upstream.requests[-1].body["messages"]
        assert len(messages) == 1 + 2 * 9 and messages[-1] == {"role": "tool", "content": "ok 9",
                                                               "tool_call_id": "call_9"}
        with pytest.raises(openai.NotFoundError):  # store: false kept them in the connection only
            await client.responses.retrieve(finals[0].id)


async def test_websocket_mode_runs_one_response_at_a_time_and_cancels_on_close(servers: Servers) -> None:
    async with FakeOpenAI(chunks=["a", "b", "c"], stall_after=1, stall=None) as upstream:
        client = client_for(servers("--base-url", upstream.base_url))
        async with client.responses.connect() as connection:
            await connection.response.create(model="test", input="slow one")
            seen = [await connection.recv() for _ in range(5)]  # created .. the first delta
            assert seen[-1].type == "response.output_text.delta"
            await connection.response.create(model="test", input="too soon")
            refused = await connection.recv()
            assert refused.type == "error" and refused.error.code == "response_in_progress"
            assert refused.sequence_number == 5  # numbered in the running response's sequence
            upstream.release()
            rest = []
            async for event in connection:
                rest.append(event)
                if event.type == "response.completed":
                    break
            assert rest[-1].response.output_text == "abc" and len(upstream.requests) == 1
            upstream.configure(stall_after=1, stall=None)
            await connection.response.create(model="test", input="then leave")
            while (await connection.recv()).type != "response.output_text.delta":
                pass
        await upstream.wait_until(lambda: upstream.requests[-1].closed_early, timeout=5)
        await asyncio.sleep(0)


def test_the_readmes_responses_example_runs_against_the_demo_server(servers: Servers) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    marker = "# pip install openai; with `.venv/bin/python -m monoai_tornado` running"
    example = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if marker in block)
    demo = Servers("--log-level", "warning")
    try:
        base = demo("--demo-delay", "0")
        done = subprocess.run([sys.executable, "-c", example.replace("http://localhost:8000", base)],
                              capture_output=True, text=True, timeout=60)
    finally:
        demo.stop_all()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "Ciao!" in lines[0] and "And again?" in lines[1] and "Stream it" in lines[2]
    assert lines[-1] == "The price_of tool returned 2.40 EUR."


async def test_a_response_past_the_drain_timeout_fails_with_shutting_down(servers: Servers) -> None:
    base = servers("--backend", "demo", "--demo-delay", "0.5", "--drain-timeout", "0.5")
    ws = await connect(base, "/v1/responses")
    await send(ws, {"type": "response.create", "model": "monoai-demo", "input": "a slow answer"})
    while (await read(ws))["type"] != "response.output_text.delta":
        pass
    servers.procs[-1].send_signal(signal.SIGTERM)
    event = await read(ws, timeout=15)
    while event is not None and event["type"] == "response.output_text.delta":
        event = await read(ws, timeout=15)
    assert event is not None and event["type"] == "response.failed"
    assert event["response"]["status"] == "failed" and event["response"]["error"]["code"] == "shutting_down"
    assert await read(ws) is None and ws.close_code == 1001
