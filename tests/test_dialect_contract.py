"""Statements of API.md's dialect sections (Anthropic Messages, Responses) checked against the
demo model in-process, through the real ``anthropic`` and ``openai`` SDKs."""
from __future__ import annotations

from typing import Any

import pytest

from tests.test_keys_http import Keys, keys, keys_app, keys_url  # noqa: F401 (fixtures)

anthropic = pytest.importorskip("anthropic")

USER = [{"role": "user", "content": "hi"}]


def sdk(url: str) -> Any:
    return anthropic.AsyncAnthropic(base_url=url, api_key="any", max_retries=0, timeout=20)


async def test_an_answer_cut_by_a_stop_sequence_says_stop_sequence_and_which(app_url):
    client = sdk(app_url())
    message = await client.messages.create(model="monoai-demo", max_tokens=100, messages=USER,
                                           stop_sequences=["nothing like it", "real LLM"])
    assert message.content[0].text == "[demo model, not a "
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "real LLM")
    async with client.messages.stream(model="monoai-demo", max_tokens=100, messages=USER,
                                      stop_sequences=["real LLM"]) as stream:
        final = await stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "real LLM")


async def test_a_stop_sequence_not_met_ends_the_turn(app_url):
    message = await sdk(app_url()).messages.create(model="monoai-demo", max_tokens=100, messages=USER,
                                                   stop_sequences=["never said"])
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)


async def test_a_responses_websocket_refused_for_its_key_answers_openais_error_shape(keys_url, keys):
    import json

    import websockets
    from websockets.exceptions import InvalidStatus

    url = keys_url(require=True).replace("http://", "ws://") + "/v1/responses"
    for headers in ({"Authorization": "Bearer sk-wrong"}, {}):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=headers):
                pass
        response = refused.value.response
        assert response.status_code == 401
        error = json.loads(response.body)["error"]
        assert error["type"] == "authentication_error" and error["param"] is None
        assert error["code"] in ("invalid_api_key", "missing_api_key") and error["message"]


async def test_a_function_calls_call_id_is_call_prefixed_whatever_id_the_upstream_gave(app_url):
    import openai

    from monoai_tornado.backends.openai import OpenAIBackend
    from tests.support.fake_openai import FakeOpenAI, Reply

    asked = Reply(chunks=(), tool_calls=[{"id": "Xk2Lq9", "name": "get_weather", "arguments": '{"city": "Rome"}'}])
    async with FakeOpenAI(replies=[asked, asked], chunks=["Sunny"]) as upstream:
        client = openai.AsyncOpenAI(base_url=app_url(model=OpenAIBackend(upstream.base_url, "test")) + "/v1",
                                    api_key="any", max_retries=0)
        tools: Any = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
        first = await client.responses.create(model="test", input="weather?", tools=tools)
        streamed = [event async for event in await client.responses.create(model="test", input="weather?",
                                                                            tools=tools, stream=True)]
        calls = [first.output[0], streamed[-1].response.output[0]]  # type: ignore[union-attr]
        assert [(call.type, call.call_id) for call in calls] == [("function_call", "call_Xk2Lq9")] * 2
        answer = await client.responses.create(model="test", previous_response_id=first.id, tools=tools, input=[
            {"type": "function_call_output", "call_id": "call_Xk2Lq9", "output": "sunny"}])
        assert answer.output_text == "Sunny"
        sent = upstream.requests[-1].body["messages"]
        assert sent[-2]["tool_calls"][0]["id"] == sent[-1]["tool_call_id"]  # the pair still matches upstream
