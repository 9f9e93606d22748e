"""``--prompt-tokens``: the prompt of an answer without usage counted by the upstream, in front of
the real test upstream (tests/support/fake_openai.py answers vLLM's and llama.cpp's tokenize
endpoints in their real shapes). The real llama.cpp server's count: tests/test_llama_real.py.
"""
from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.backends.prompt_count import UpstreamPromptCounter
from monoai_tornado.cli import build_backend, build_parser
from tests.support.fake_openai import FakeOpenAI, Reply, template_tokens
from tests.support.http import json_of, parse_sse

KEY = "sk-upstream-secret"
PROMPT = "How many tokens is this prompt?"
ASKED = [{"role": "user", "content": PROMPT}]
COUNT_LOG = "monoai_tornado.backends.prompt_count"


def backend_for(upstream: FakeOpenAI, method: str) -> OpenAIBackend:
    return OpenAIBackend(upstream.base_url, "m", api_key=KEY, first_token_timeout=5, prompt_tokens=method)


def paths(upstream: FakeOpenAI) -> list[str]:
    return [request.path for request in upstream.requests]


@pytest.mark.parametrize(("method", "asked"), [
    ("vllm", ["/v1/chat/completions", "/tokenize"]),
    ("llama-server", ["/v1/chat/completions", "/apply-template", "/tokenize"]),
])
async def test_a_tokenize_endpoint_counts_the_prompt_with_its_chat_template(app_url, fetch, counter, method, asked):
    async with FakeOpenAI(usage=None) as upstream:  # no usage in the stream, as llama-cpp-python
        url = app_url(model=backend_for(upstream, method))
        response = await fetch(url + "/model/stream", "POST", {"prompt": PROMPT}, headers={"Accept": "text/event-stream"})
        assert response.code == 200
        usage = parse_sse(response.body)[-1][1]["result"]["usage"]
        templated = template_tokens(ASKED)
        assert usage["prompt_tokens"] == templated != counter.count_messages(ASKED)
        assert usage["completion_tokens"] == counter.count("Hello, world!")
        assert usage["estimated"] is True  # the completion still is
        assert paths(upstream) == asked  # asked after the stream, never beside it
        tokenize = upstream.requests[-1]
        assert tokenize.headers["Authorization"] == f"Bearer {KEY}"
        if method == "vllm":
            assert tokenize.body == {"model": "m", "messages": ASKED, "add_generation_prompt": True}
        else:
            assert upstream.requests[1].body == {"messages": ASKED}
            assert tokenize.body["add_special"] is True  # as llama.cpp tokenizes a chat prompt


async def test_chat_asks_a_one_token_answer_and_reads_its_prompt_tokens(app_url, fetch):
    async with FakeOpenAI(replies=[Reply(usage=None), Reply(json_answer=True, usage=(42, 1))]) as upstream:
        url = app_url(model=backend_for(upstream, "chat"))
        response = await fetch(url + "/model", "POST", {"prompt": PROMPT, "max_tokens": 50})
        assert response.code == 200
        assert json_of(response)["usage"]["prompt_tokens"] == 42
        stream, probe = (request.body for request in upstream.requests)
        assert stream["stream"] is True and stream["max_tokens"] == 50
        assert probe == {**{k: v for k, v in stream.items() if k != "stream_options"}, "stream": False, "max_tokens": 1}


async def test_usage_the_upstream_reports_is_kept_and_nothing_more_is_asked(app_url, fetch):
    async with FakeOpenAI(usage=(11, 7)) as upstream:
        url = app_url(model=backend_for(upstream, "vllm"))
        response = await fetch(url + "/model", "POST", {"prompt": PROMPT})
        assert json_of(response)["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        assert paths(upstream) == ["/v1/chat/completions"]


async def test_a_failing_count_falls_back_to_the_estimate_with_one_warning(app_url, fetch, counter, caplog):
    async with FakeOpenAI(usage=None) as upstream:
        upstream.tokenize_status = 500
        url = app_url(model=backend_for(upstream, "vllm"))
        with caplog.at_level(logging.DEBUG, logger=COUNT_LOG):
            for _ in range(2):
                response = await fetch(url + "/model", "POST", {"prompt": PROMPT})
                assert response.code == 200  # the prompt never fails for its count
                assert json_of(response)["usage"]["prompt_tokens"] == counter.count_messages(ASKED)
            warnings = [r for r in caplog.records if r.name == COUNT_LOG and r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "/tokenize answered 500" in warnings[0].getMessage()
            assert KEY not in caplog.text
            upstream.tokenize_status = 200  # back: counted again
            response = await fetch(url + "/model", "POST", {"prompt": PROMPT})
            assert json_of(response)["usage"]["prompt_tokens"] == template_tokens(ASKED)
        assert paths(upstream).count("/tokenize") == 3


async def test_an_endpoint_the_upstream_lacks_falls_back_to_the_estimate(app_url, fetch, counter):
    async with FakeOpenAI(usage=None) as upstream:  # it streams even when asked for one JSON answer:
        url = app_url(model=backend_for(upstream, "chat"))  # the one-token count reads no usage from it
        response = await fetch(url + "/model", "POST", {"prompt": PROMPT})
        assert response.code == 200
        assert json_of(response)["usage"]["prompt_tokens"] == counter.count_messages(ASKED)


async def test_a_count_that_never_comes_is_given_up_at_its_timeout(caplog):
    with socket.socket() as silent:  # accepts connections (its backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        counter = UpstreamPromptCounter("vllm", f"http://127.0.0.1:{port}/v1", {}, timeout=0.3)
        with caplog.at_level(logging.WARNING, logger=COUNT_LOG):
            assert await asyncio.wait_for(counter.count({"model": "m", "messages": ASKED}), 10) is None
        assert "no answer within 0.3 s" in caplog.text


def test_the_command_line_option_reaches_the_backend():
    parser = build_parser()
    args = parser.parse_args(["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                              "--prompt-tokens", "llama-server"])
    backend = build_backend(args)
    assert isinstance(backend, OpenAIBackend) and backend.prompt_counter is not None
    assert (backend.prompt_counter.method, backend.prompt_counter.root) == ("llama-server", "http://127.0.0.1:9")
    default = build_backend(parser.parse_args(["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                                               "--model", "m"]))
    assert isinstance(default, OpenAIBackend) and default.prompt_counter is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--prompt-tokens", "tokenize"])
    with pytest.raises(ValueError):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", prompt_tokens="tokenize")
