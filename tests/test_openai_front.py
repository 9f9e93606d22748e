"""``/v1``: the official ``openai`` SDK against ``python -m monoai_tornado``, changing only its base URL."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import Servers

pytestmark = pytest.mark.process

USER = {"role": "user", "content": "hi there"}
CALCULATOR = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluates arithmetic",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    started = Servers("--log-level", "warning")
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def client(servers: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=servers() + "/v1", api_key="not-checked", max_retries=0, timeout=20)


def joined(stream: Any) -> tuple[str, list[Any]]:
    chunks = list(stream)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def test_models_list_the_model_by_its_backend_name_and_every_agent(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models] == ["monoai-demo", "agent/assistant"]
    assert all(m.object == "model" and m.created > 0 and m.owned_by for m in models)


def test_a_completion_answers_the_prompt_with_its_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="monoai-demo", messages=[USER])
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.model == "monoai-demo"
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and 'You said: "hi there"' in (choice.message.content or "")
    assert choice.finish_reason == "stop"
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_streamed_completion_joins_to_the_same_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="monoai-demo", messages=[USER]).choices[0].message.content
    text, chunks = joined(client.chat.completions.create(model="monoai-demo", messages=[USER], stream=True))
    assert text == whole
    assert all(c.object == "chat.completion.chunk" and c.model == "monoai-demo" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 5  # streamed in pieces
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert all(c.usage is None for c in chunks)  # no usage chunk unless asked


def test_include_usage_adds_a_last_chunk_with_no_choices_and_the_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="monoai-demo", messages=[USER]).usage
    _, chunks = joined(client.chat.completions.create(model="monoai-demo", messages=[USER], stream=True,
                                                      stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}) == \
        whole.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"})
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_the_whole_conversation_reaches_the_model(client: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": [{"type": "text", "text": "second "}, {"type": "text", "text": "one"}]}]
    answer = client.chat.completions.create(model="monoai-demo", messages=messages)
    content = answer.choices[0].message.content or ""
    assert 'You said: "second one"' in content
    assert "I saw 4 messages (1 system, 2 user, 1 assistant) in 2 user turns" in content
    single = client.chat.completions.create(model="monoai-demo", messages=[{"role": "user", "content": "second one"}])
    assert answer.usage.prompt_tokens > single.usage.prompt_tokens  # the history is counted too


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client: openai.OpenAI) -> None:
    for field in ("max_tokens", "max_completion_tokens"):
        answer = client.chat.completions.create(model="monoai-demo", messages=[USER], **{field: 5})
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage.completion_tokens == 5
        assert answer.choices[0].message.content == "[demo model, not"
    text, chunks = joined(client.chat.completions.create(model="monoai-demo", messages=[USER], max_tokens=5,
                                                         stream=True))
    assert text == "[demo model, not"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]


def test_stop_ends_the_answer_before_the_stop_sequence(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="monoai-demo", messages=[USER], stop=["You said"])
    assert answer.choices[0].message.content == "[demo model, not a real LLM] "
    assert answer.choices[0].finish_reason == "stop"


def test_an_agent_runs_its_tools_and_answers_its_final_text(client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "what is 12*(3+4)?"}]
    answer = client.chat.completions.create(model="agent/assistant", messages=question)
    assert answer.choices[0].message.content == "12*(3+4) = 84."
    assert answer.choices[0].message.tool_calls is None and answer.choices[0].finish_reason == "stop"
    assert answer.model == "agent/assistant" and answer.usage.total_tokens > 0
    text, _ = joined(client.chat.completions.create(model="agent/assistant", messages=question, stream=True))
    assert text == "12*(3+4) = 84."


def test_tools_offered_to_the_model_come_back_as_tool_calls(client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "what is 2+2?"}]
    answer = client.chat.completions.create(model="monoai-demo", messages=question, tools=[CALCULATOR])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.type, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == \
        [("function", "calculator", '{"expression": "2+2"}')]
    _, chunks = joined(client.chat.completions.create(model="monoai-demo", messages=question, tools=[CALCULATOR],
                                                      stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert [(d.index, d.id, d.function.name, d.function.arguments) for d in deltas] == \
        [(0, choice.message.tool_calls[0].id, "calculator", '{"expression": "2+2"}')]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # The client runs the tool and sends its result back: the model answers with it.
    call = choice.message.tool_calls[0]
    follow_up = question + [choice.message.model_dump(exclude_none=True),
                            {"role": "tool", "tool_call_id": call.id, "content": "4"}]
    final = client.chat.completions.create(model="monoai-demo", messages=follow_up, tools=[CALCULATOR])
    assert final.choices[0].message.content == "2+2 = 4." and final.choices[0].finish_reason == "stop"


def test_each_error_is_the_sdk_exception_with_openai_shape_and_our_code(client: openai.OpenAI) -> None:
    cases: list[tuple[dict[str, Any], type[openai.APIStatusError], str]] = [
        ({"model": "no-such-model", "messages": [USER]}, openai.NotFoundError, "model_not_found"),
        ({"model": "agent/nobody", "messages": [USER]}, openai.NotFoundError, "model_not_found"),
        ({"model": "monoai-demo", "messages": []}, openai.BadRequestError, "missing_prompt"),
        ({"model": "monoai-demo", "messages": [USER], "n": 2}, openai.BadRequestError, "invalid_json"),
        ({"model": "monoai-demo", "messages": [USER], "max_tokens": 0}, openai.BadRequestError, "invalid_json"),
        ({"model": "agent/assistant", "messages": [USER], "tools": [CALCULATOR]}, openai.BadRequestError,
         "tools_not_supported"),
    ]
    for kwargs, error, code in cases:
        with pytest.raises(error) as raised:
            client.chat.completions.create(**kwargs)
        assert raised.value.code == code and raised.value.type in {"invalid_request_error", "not_found_error"}
        assert isinstance(raised.value.body, dict) and raised.value.body["param"] is None
        assert raised.value.message.startswith(f"Error code: {raised.value.status_code}")


def test_rate_limits_give_429_with_retry_after_and_headers_on_every_answer(servers: Any) -> None:
    # (windows are fixed: an hour's rarely ends between these requests, a minute's could)
    client = openai.OpenAI(base_url=servers("--limit", "2/hour", "--token-limit", "100000/hour") + "/v1",
                           api_key="x", max_retries=0, timeout=20)
    raw = client.chat.completions.with_raw_response.create(model="monoai-demo", messages=[USER], user="alice")
    assert raw.headers["x-ratelimit-limit-requests"] == "2" and raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert raw.headers["x-ratelimit-limit-tokens"] == "100000"
    assert raw.parse().choices[0].finish_reason == "stop"
    with client.chat.completions.with_streaming_response.create(model="monoai-demo", messages=[USER], user="alice",
                                                               stream=True) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "0"  # before the first byte of the body
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert "data: [DONE]" in "".join(streamed.iter_lines())
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="monoai-demo", messages=[USER], user="alice")
    headers = refused.value.response.headers
    assert int(headers["retry-after"]) >= 1 and headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.value.code == "rate_limited" and refused.value.type == "rate_limit_error"
    # `user` is the identity: another user still has a budget.
    assert client.chat.completions.create(model="monoai-demo", messages=[USER], user="bob").choices


# --- in front of an OpenAI-compatible upstream ----------------------------------------------------

def upstream_client(servers: Any, upstream: FakeOpenAI) -> openai.AsyncOpenAI:
    base = servers("--backend", "openai", "--base-url", upstream.base_url, "--model", "test-model", "--no-agents")
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=20)


async def test_streamed_tool_call_deltas_and_upstream_usage_come_through(servers: Any) -> None:
    calls = [{"id": "call_abc", "name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
             {"id": "call_def", "name": "get_time", "arguments": '{"zone": "CET"}'}]
    async with FakeOpenAI(chunks=["Checking"], tool_calls=calls, usage=(123, 45)) as upstream:
        client = upstream_client(servers, upstream)
        tools = [{"type": "function", "function": {"name": c["name"], "parameters": {"type": "object"}}} for c in calls]
        stream = await client.chat.completions.create(
            model="test-model", messages=[{"role": "system", "content": "s"}, USER], tools=tools,
            tool_choice="auto", temperature=0.2, top_p=0.9, stop=["END"], max_tokens=50, stream=True,
            stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
        rebuilt: dict[int, dict[str, str]] = {}
        for delta in (d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()):
            slot = rebuilt.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] += delta.id or ""
            slot["name"] += (delta.function.name or "") if delta.function else ""
            slot["arguments"] += (delta.function.arguments or "") if delta.function else ""
        assert [rebuilt[i] for i in sorted(rebuilt)] == calls
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
        assert chunks[-1].usage.prompt_tokens == 123 and chunks[-1].usage.completion_tokens == 45  # not re-estimated
        sent = upstream.requests[0].body
        assert sent["messages"] == [{"role": "system", "content": "s"}, USER]
        assert sent["tools"] == tools and sent["tool_choice"] == "auto" and sent["stop"] == ["END"]
        assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.2, 0.9, 50)


async def test_a_client_leaving_a_stream_stops_the_upstream_call(servers: Any) -> None:
    async with FakeOpenAI(chunks=["one", " two", " three"], stall_after=1, stall=None) as upstream:
        client = upstream_client(servers, upstream)
        stream = await client.chat.completions.create(model="test-model", messages=[USER], stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                assert chunk.choices[0].delta.content == "one"
                break
        assert not upstream.requests[0].finished
        await stream.close()
        await upstream.wait_until(lambda: upstream.closed_early, timeout=10)
        assert upstream.requests[0].pieces_sent == 1


async def test_an_upstream_failure_mid_stream_is_one_error_event(servers: Any) -> None:
    async with FakeOpenAI(chunks=["a", "b", "c"], error_after=2, error_message="model overloaded") as upstream:
        client = upstream_client(servers, upstream)
        stream = await client.chat.completions.create(model="test-model", messages=[USER], stream=True)
        seen = []
        with pytest.raises(openai.APIError) as failed:
            async for chunk in stream:
                seen += [chunk.choices[0].delta.content] if chunk.choices else []
        assert "a" in seen and "b" in seen
        assert "model overloaded" in failed.value.message
        assert isinstance(failed.value.body, dict) and failed.value.body["code"] == "backend_error"
        with pytest.raises(openai.APIStatusError) as whole:
            upstream.configure(error_after=None, status=500)
            await client.chat.completions.create(model="test-model", messages=[USER])
        assert whole.value.status_code == 502 and whole.value.code == "backend_error"
        assert whole.value.type == "api_error"


def test_the_readme_python_example_prints_a_streamed_answer_and_its_usage(servers: Any) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it from any OpenAI client", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    base = servers()
    code = code.replace("http://localhost:8000", base)
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "['monoai-demo', 'agent/assistant']"
    assert "I saw 2 messages (1 system, 1 user)" in lines[1] and " stop " in lines[1]
    assert 'You said: "Stream it"' in lines[2]
    assert lines[3].startswith("usage: CompletionUsage(completion_tokens=")


def test_an_unknown_path_under_v1_is_a_404_in_openai_shape(servers: Any) -> None:
    import json
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(servers() + "/v1/embeddings", data=b"{}", timeout=10)
    assert missing.value.code == 404
    assert json.loads(missing.value.read())["error"] == {
        "message": "No endpoint at /v1/embeddings", "type": "not_found_error", "code": "not_found", "param": None}


def test_the_readme_curl_lines_answer_models_a_completion_and_a_stream(servers: Any) -> None:
    import json

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("```bash\ncurl -s localhost:8000/v1/models", 1)[1].split("```", 1)[0]
    text = ("curl -s localhost:8000/v1/models" + block).replace("\\\n", " ").strip()
    lines = ["curl " + command.replace("\n", " ") for command in text.split("curl ") if command.strip()]
    base = servers()
    outputs = [subprocess.run(line.replace("localhost:8000", base.removeprefix("http://")), shell=True,
                              capture_output=True, text=True, timeout=30, check=True).stdout for line in lines]
    assert [m["id"] for m in json.loads(outputs[0])["data"]] == ["monoai-demo", "agent/assistant"]
    assert json.loads(outputs[1])["object"] == "chat.completion"
    events = [line[6:] for line in outputs[2].split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["usage"]["total_tokens"] > 0
