"""``upstream_stream="as-client"``: a non-streamed request goes upstream non-streamed (one JSON
answer), a streamed one stays streamed; ``"always"`` (the default) streams every call."""
from __future__ import annotations

import contextlib
import json
import time


import pytest

from monoai_tornado import Application
from monoai_tornado.backends.base import BackendEvent, CallOptions, ReportedUsage, TextDelta
from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.config.file import ConfigError, load_config
from monoai_tornado.errors import BackendTimeout
from tests.support.events import pieces
from tests.support.fake_openai import FakeOpenAI, Reply

MESSAGES = [{"role": "user", "content": "Say hello"}]


async def collect(backend: OpenAIBackend, options: CallOptions | None) -> list[BackendEvent]:
    events = []
    async with contextlib.aclosing(backend.stream(MESSAGES, options=options)) as stream:
        async for event in stream:
            events.append(event)
    return events


def text_of(events: list[BackendEvent]) -> str:
    return "".join(e.text for e in pieces(events) if isinstance(e, TextDelta))


@pytest.mark.parametrize("mode, stream, sent_streamed", [
    ("as-client", False, False), ("as-client", True, True), ("always", False, True), ("always", True, True)])
async def test_the_upstream_is_asked_to_stream_only_when_it_must(mode, stream, sent_streamed) -> None:
    async with FakeOpenAI(replies=[Reply(chunks=["Hel", "lo"], usage=(7, 2), honour_stream=True)]) as upstream:
        backend = OpenAIBackend(upstream.base_url, "test-model", upstream_stream=mode)
        events = await collect(backend, CallOptions(stream=stream, max_tokens=50))
    body = upstream.requests[0].body
    assert body["stream"] is sent_streamed
    assert ("stream_options" in body) is sent_streamed
    assert body["max_tokens"] == 50  # the call's options go either way
    assert text_of(events) == "Hello"
    assert [e for e in events if isinstance(e, ReportedUsage)] == [ReportedUsage(7, 2)]


async def test_a_whole_answer_must_come_within_the_first_token_timeout() -> None:
    async with FakeOpenAI(replies=[Reply(first_byte_delay=30, honour_stream=True)]) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m", first_token_timeout=0.3, upstream_stream="as-client")
        started = time.monotonic()
        with pytest.raises(BackendTimeout, match="sent nothing within 0.3 s"):
            await collect(backend, CallOptions(stream=False))
        assert time.monotonic() - started < 2
        await upstream.wait_until(lambda: upstream.closed_early, 2)  # the upstream call was abandoned


async def test_with_a_total_timeout_the_whole_answer_may_take_that_long() -> None:
    """A slow whole answer (0.5 s) past the first-token timeout (0.3 s) but within the total (5 s)."""
    async with FakeOpenAI(replies=[Reply(chunks=["ok"], first_byte_delay=0.5, honour_stream=True)]) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m", first_token_timeout=0.3, timeout=5,
                                upstream_stream="as-client")
        assert text_of(await collect(backend, CallOptions(stream=False))) == "ok"


async def test_through_the_server_a_plain_request_is_sent_whole_and_a_streamed_one_streamed(serve, counter,
                                                                                          fetch) -> None:
    async with FakeOpenAI(replies=[Reply(chunks=["Hel", "lo"], usage=(9, 2), honour_stream=True)] * 2) as upstream:
        backend = OpenAIBackend(upstream.base_url, "test-model", upstream_stream="as-client")
        url = serve(Application("T", model=backend, token_counter=counter))
        body = {"model": "test-model", "messages": MESSAGES}
        plain = await fetch(url + "/v1/chat/completions", "POST", body)
        streamed = await fetch(url + "/v1/chat/completions", "POST", {**body, "stream": True})
    answer = json.loads(plain.body)
    assert answer["choices"][0]["message"]["content"] == "Hello"
    assert answer["usage"]["prompt_tokens"] == 9 and answer["usage"]["completion_tokens"] == 2
    assert b"data: [DONE]" in streamed.body and b'"Hel"' in streamed.body
    assert [r.body["stream"] for r in upstream.requests] == [False, True]


def test_a_bad_choice_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="upstream_stream"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", upstream_stream="sometimes")
    config = tmp_path / "gateway.toml"
    config.write_text('[[models]]\nname = "m"\nbase_url = "http://127.0.0.1:9/v1"\nupstream_stream = "sometimes"\n')
    with pytest.raises(ConfigError, match="upstream_stream"):
        load_config(str(config))


def test_the_option_reaches_the_backend_from_the_command_line_and_the_config(tmp_path) -> None:
    from monoai_tornado.cli import build_backend, build_parser

    args = build_parser().parse_args(["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                                      "--upstream-stream", "as-client"])
    assert build_backend(args).upstream_stream == "as-client"
    config = tmp_path / "gateway.toml"
    config.write_text('[[models]]\nname = "m"\nbase_url = "http://127.0.0.1:9/v1"\nupstream_stream = "as-client"\n')
    assert load_config(str(config)).models[0].upstream_stream == "as-client"


