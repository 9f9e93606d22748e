"""OpenAIBackend against a real OpenAI-compatible upstream over real sockets (tests/support/fake_openai.py)."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from typing import Any

import pytest

from monoai_tornado.backends.base import BackendEvent, CallOptions, ReportedUsage, TextDelta, ToolCall, ToolCallsRequested
from monoai_tornado.backends.openai import OpenAIBackend
from monoai_tornado.calls import UsageMeter, call_model
from monoai_tornado.errors import ApiError, BackendError, BackendTimeout
from monoai_tornado.usage import TokenCounter

from tests.support.events import pieces
from tests.support.fake_openai import FakeOpenAI, Reply

MESSAGES = [{"role": "user", "content": "Say hello"}]
KEY = "sk-test-SECRET-0123456789"


async def collect(backend: OpenAIBackend, messages: Any = MESSAGES, **kwargs: Any) -> list[BackendEvent]:
    events = []
    async with contextlib.aclosing(backend.stream(messages, **kwargs)) as stream:
        async for event in stream:
            events.append(event)
    return pieces(events)


def text_of(events: list[BackendEvent]) -> str:
    return "".join(e.text for e in pieces(events) if isinstance(e, TextDelta))


async def no_new_tasks(before: set[asyncio.Task[Any]], timeout: float = 2.0) -> None:
    """Wait (bounded) until every task started since ``before`` has finished."""
    deadline = time.monotonic() + timeout
    while True:
        extra = {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()}
        if not extra:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"tasks left pending: {extra}")
        await asyncio.sleep(0.01)


def client_tasks() -> set[asyncio.Task[Any]]:
    """Pending tasks of Tornado's HTTP client and of the backend (not of the fake upstream)."""
    names = ("_HTTPConnection", "TCPClient", "UpstreamCall", "OpenAIBackend", "_Exchange")
    return {t for t in asyncio.all_tasks() if not t.done()
            and any(n in getattr(t.get_coro(), "__qualname__", "") for n in names)}


async def test_streams_text_then_usage_and_sends_the_documented_request() -> None:
    async with FakeOpenAI(chunks=["Hel", "lo", " there"]) as upstream:
        backend = OpenAIBackend(upstream.base_url + "/", "test-model", api_key=KEY,
                                extra_body={"temperature": 0.2, "max_tokens": 50})
        events = await collect(backend)
    assert events == [TextDelta("Hel"), TextDelta("lo"), TextDelta(" there"), ReportedUsage(11, 7)]
    [request] = upstream.requests
    assert request.path == "/v1/chat/completions" and request.method == "POST"
    assert request.body == {"model": "test-model", "messages": MESSAGES, "stream": True,
                            "stream_options": {"include_usage": True}, "temperature": 0.2, "max_tokens": 50}
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.finished and not request.closed_early
    assert backend.describe() == {"provider": "openai-compatible", "name": "test-model"}
    assert backend.supports_tools and backend.encoding_model == "test-model"


async def test_no_authorization_header_without_a_key_and_no_key_in_repr() -> None:
    async with FakeOpenAI() as upstream:
        await collect(OpenAIBackend(upstream.base_url, "m"))
    assert "Authorization" not in upstream.requests[0].headers
    assert KEY not in repr(OpenAIBackend("http://user:pw@h/v1", "m", api_key=KEY))
    assert "pw" not in repr(OpenAIBackend("http://user:pw@h/v1", "m", api_key=KEY))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAIBackend("ftp://host/v1", "m")
    with pytest.raises(ValueError, match="model"):
        OpenAIBackend("http://host/v1", "")
    with pytest.raises(ValueError, match="idle_timeout"):
        OpenAIBackend("http://host/v1", "m", idle_timeout=0)


async def test_first_chunk_reaches_the_consumer_while_the_upstream_is_still_answering() -> None:
    async with FakeOpenAI(chunks=["first", " second", " third"], stall_after=1) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        async with contextlib.aclosing(backend.stream(MESSAGES)) as stream:
            first = await asyncio.wait_for(stream.__anext__(), 5)
            assert first == TextDelta("first")
            [request] = upstream.requests
            assert request.pieces_sent == 1 and not request.finished  # the upstream is paused
            upstream.release()
            rest = [event async for event in stream]
    assert text_of([first, *rest]) == "first second third"
    assert request.finished and not request.closed_early


@pytest.mark.slow  # takes a second or more
async def test_events_split_across_reads_crlf_comments_and_empty_deltas() -> None:
    chunks = ["caf\u00e9 ", "\u2603 ", "\U0001f600", " done"]
    async with FakeOpenAI(chunks=chunks, split_bytes=3, crlf=True, comments=True) as upstream:
        events = await collect(OpenAIBackend(upstream.base_url, "m"))
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta(c) for c in chunks]
    assert events[-1] == ReportedUsage(11, 7)


async def test_many_small_chunks_in_order() -> None:
    chunks = [f"{i} " for i in range(2000)]
    async with FakeOpenAI(chunks=chunks) as upstream:
        events = await collect(OpenAIBackend(upstream.base_url, "m"))
    assert text_of(events) == "".join(chunks)


async def test_a_slow_consumer_pauses_reading_and_loses_nothing() -> None:
    chunks = [f"{i:04d}" + "x" * 10_000 for i in range(300)]  # 3 MB, beyond the 1 MiB high-water mark
    async with FakeOpenAI(chunks=chunks) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        texts = []
        async with contextlib.aclosing(backend.stream(MESSAGES)) as stream:
            async for event in stream:
                if not texts:
                    await asyncio.sleep(0.3)  # the upstream sends everything it can meanwhile
                texts += [e.text for e in pieces([event]) if isinstance(e, TextDelta)]
    assert texts == chunks and upstream.requests[0].finished


async def test_streamed_tool_calls_are_assembled_and_yielded_once_at_the_end() -> None:
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    calls = [{"id": "call_a", "name": "add", "arguments": json.dumps({"a": 1, "b": 22})},
             {"id": "call_b", "name": "word_count", "arguments": json.dumps({"text": "one two three"})}]
    async with FakeOpenAI(chunks=["Let me compute."], tool_calls=calls) as upstream:
        events = await collect(OpenAIBackend(upstream.base_url, "m"), tools=tools)
    assert upstream.requests[0].body["tools"] == tools
    assert events == [
        TextDelta("Let me compute."),
        ToolCallsRequested((ToolCall("call_a", "add", '{"a": 1, "b": 22}'),
                            ToolCall("call_b", "word_count", '{"text": "one two three"}'))),
        ReportedUsage(11, 7),
    ]


async def test_without_upstream_usage_call_model_counts_tokens_itself(counter: TokenCounter) -> None:
    async with FakeOpenAI(chunks=["Hello", " world"], usage=None) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        assert not any(isinstance(e, ReportedUsage) for e in await collect(backend))
        outcome = await call_model(backend, MESSAGES, meter=UsageMeter(counter), on_text=_ignore)
    assert outcome.text == "Hello world"
    assert outcome.usage.estimated and outcome.usage.completion_tokens == counter.count("Hello world")


async def test_a_server_that_ignores_stream_and_answers_json_still_works() -> None:
    async with FakeOpenAI(chunks=["All ", "at once"], json_answer=True) as upstream:
        events = await collect(OpenAIBackend(upstream.base_url, "m"))
    assert events == [TextDelta("All at once"), ReportedUsage(11, 7)]


@pytest.mark.parametrize(("status", "ours", "code"), [
    (400, 400, "upstream_rejected"), (413, 400, "upstream_rejected"), (422, 400, "upstream_rejected"),
    (401, 502, "backend_error"), (403, 502, "backend_error"), (404, 502, "backend_error"),
    (429, 503, "upstream_busy"), (503, 503, "upstream_busy"),
    (408, 504, "backend_timeout"), (504, 504, "backend_timeout"), (500, 502, "backend_error"),
])
async def test_upstream_http_errors_are_mapped_with_the_upstream_status_and_reason(
        status: int, ours: int, code: str, caplog: pytest.LogCaptureFixture) -> None:
    message = f"Incorrect API key provided: {KEY}" if status == 401 else "the model is overloaded"
    async with FakeOpenAI(status=status, error_message=message) as upstream:
        with caplog.at_level(logging.WARNING, logger="monoai_tornado"):
            with pytest.raises(ApiError) as caught:
                await collect(OpenAIBackend(upstream.base_url, "m", api_key=KEY))
    error = caught.value
    assert (error.status, error.code) == (ours, code)
    assert error.to_dict()["upstream_status"] == status
    assert (message.split(":")[0] if status == 401 else message) in str(error)
    assert KEY not in str(error) and KEY not in repr(error.to_dict()) and KEY not in caplog.text
    credential_lines = [r for r in caplog.records if "credentials" in r.getMessage()]
    assert len(credential_lines) == (1 if status in (401, 403) else 0)
    if status in (401, 403):
        assert "credentials" in str(error) and "API key" in str(error)


@pytest.mark.parametrize(("headers", "retry_after"), [
    ({"Retry-After": "7"}, 7), ({"Retry-After": "2.2"}, 3), ({"retry-after-ms": "1500", "Retry-After": "9"}, 2),
    ({}, 1), ({"Retry-After": "soon"}, 1),
])
async def test_a_busy_upstream_passes_its_retry_after_on(headers: dict[str, str], retry_after: int) -> None:
    async with FakeOpenAI(status=429, error_message="Rate limit reached", error_headers=headers) as upstream:
        with pytest.raises(ApiError) as caught:
            await collect(OpenAIBackend(upstream.base_url, "m"))
    error = caught.value
    assert error.status == 503 and error.retry_after == retry_after
    assert error.to_dict() == {"error": f"The model server is busy (429 Too Many Requests: Rate limit reached); "
                                        f"retry in {retry_after} s", "code": "upstream_busy",
                               "upstream_status": 429, "retry_after": retry_after}


async def test_a_stream_that_ends_without_a_finish_reason_is_an_error_not_an_answer() -> None:
    async with FakeOpenAI(chunks=["half an", " answer"], finish=False) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        seen: list[BackendEvent] = []
        with pytest.raises(BackendError, match="without a finish_reason"):
            async for event in backend.stream(MESSAGES):
                seen.append(event)
    assert text_of(seen) == "half an answer"


async def test_the_call_options_win_over_the_defaults_field_by_field() -> None:
    defaults = CallOptions(max_tokens=100, temperature=0.5, extra={"top_k": 40, "seed": 1})
    async with FakeOpenAI() as upstream:
        backend = OpenAIBackend(upstream.base_url, "m", defaults=defaults, extra_body={"seed": 2})
        await collect(backend)
        await collect(backend, options=CallOptions(max_tokens=7, stop=("END",), extra={"top_k": 5}))
    first, second = (r.body for r in upstream.requests)
    assert {k: first[k] for k in ("max_tokens", "temperature", "top_k", "seed")} == {
        "max_tokens": 100, "temperature": 0.5, "top_k": 40, "seed": 2}
    assert "stop" not in first and "top_p" not in first
    assert {k: second[k] for k in ("max_tokens", "temperature", "top_k", "seed", "stop")} == {
        "max_tokens": 7, "temperature": 0.5, "top_k": 5, "seed": 2, "stop": ["END"]}


@pytest.mark.slow  # takes a second or more
async def test_no_total_limit_by_default_while_chunks_keep_coming() -> None:
    async with FakeOpenAI(chunks=[str(i % 10) for i in range(40)], delay=0.03) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m", idle_timeout=1, first_token_timeout=1)
        assert backend.timeout is None
        events = await collect(backend)
    assert len(text_of(events)) == 40  # lasted longer than the idle and first-token timeouts together


async def test_non_json_error_body_is_quoted_shortly() -> None:
    async with FakeOpenAI(status=502, raw_body="<html>" + "Bad gateway " * 100 + "</html>") as upstream:
        with pytest.raises(BackendError, match="502 Bad Gateway: <html>Bad gateway") as caught:
            await collect(OpenAIBackend(upstream.base_url, "m"))
    assert len(str(caught.value)) < 320


async def test_ollama_style_error_body() -> None:
    raw = json.dumps({"error": "model 'nope' not found"})
    async with FakeOpenAI(status=404, raw_body=raw, content_type="application/json") as upstream:
        with pytest.raises(BackendError, match="404 Not Found: model 'nope' not found"):
            await collect(OpenAIBackend(upstream.base_url, "nope"))


async def test_a_200_answer_that_is_not_an_event_stream() -> None:
    async with FakeOpenAI(raw_body="<html>login page</html>", content_type="text/html") as upstream:
        with pytest.raises(BackendError, match="no chat-completion events.*text/html"):
            await collect(OpenAIBackend(upstream.base_url, "m"))


async def test_connection_refused_is_a_backend_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", api_key=KEY)
    with pytest.raises(BackendError, match=f"cannot connect to upstream http://127.0.0.1:{port}/v1") as caught:
        await collect(backend)
    assert type(caught.value) is BackendError and KEY not in str(caught.value)


@pytest.mark.parametrize("delay", [0.05, 0])  # events read one by one, or several in one read
async def test_malformed_json_in_the_stream_is_a_backend_error_and_closes_the_upstream(delay: float) -> None:
    async with FakeOpenAI(chunks=["a", "b", "c"], malformed_after=1, delay=delay) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        seen: list[BackendEvent] = []
        with pytest.raises(BackendError, match="malformed JSON"):
            async with contextlib.aclosing(backend.stream(MESSAGES)) as stream:
                async for event in stream:
                    seen.append(event)
        assert seen == [TextDelta("a")]
        if delay:  # still streaming when the broken event came: it sees the connection close
            await upstream.wait_until(lambda: upstream.closed_early, 2)


async def test_an_error_event_inside_the_stream_is_a_backend_error() -> None:
    async with FakeOpenAI(chunks=["a", "b"], error_after=1, error_message="context length exceeded") as upstream:
        with pytest.raises(BackendError, match="upstream reported an error: context length exceeded"):
            await collect(OpenAIBackend(upstream.base_url, "m"))


@pytest.mark.parametrize("cut_after", [0, 2, 3])
async def test_stream_ending_before_done_is_a_backend_error(cut_after: int) -> None:
    async with FakeOpenAI(chunks=["a", "b", "c"], cut_after=cut_after) as upstream:
        with pytest.raises(BackendError, match=r"ended the stream before \[DONE\]") as caught:
            await collect(OpenAIBackend(upstream.base_url, "m"))
    assert type(caught.value) is BackendError


async def test_connection_dropped_mid_stream_is_a_backend_error() -> None:
    async with FakeOpenAI(chunks=["a", "b", "c"], cut_after=2, cut_mode="drop", delay=0.05) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        seen: list[BackendEvent] = []
        with pytest.raises(BackendError, match=r"closed the connection before the end of the stream") as caught:
            async for event in backend.stream(MESSAGES):
                seen.append(event)
    # Tornado reports the closed socket at once: bytes that came with the close may be dropped.
    assert type(caught.value) is BackendError and text_of(seen) in ("a", "ab")


async def test_no_first_byte_in_time_is_a_timeout_and_the_upstream_is_abandoned() -> None:
    async with FakeOpenAI(first_byte_delay=30) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m", first_token_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(BackendTimeout, match="sent nothing within 0.3 s") as caught:
            await collect(backend)
        assert 0.25 < time.monotonic() - started < 2
        assert caught.value.status == 504 and caught.value.code == "backend_timeout"
        await upstream.wait_until(lambda: upstream.closed_early, 2)


async def test_a_stall_mid_stream_is_a_timeout_after_the_text_so_far() -> None:
    async with FakeOpenAI(chunks=["a", "b", "c"], stall_after=2, stall=30) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m", idle_timeout=0.3)
        seen: list[BackendEvent] = []
        with pytest.raises(BackendTimeout, match="stalled for 0.3 s mid-stream"):
            async for event in backend.stream(MESSAGES):
                seen.append(event)
        assert text_of(seen) == "ab"
        await upstream.wait_until(lambda: upstream.closed_early, 2)


async def test_the_whole_call_has_a_time_limit_even_when_chunks_keep_coming() -> None:
    async with FakeOpenAI(chunks=[str(i) for i in range(100)], delay=0.05) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m", timeout=0.4, idle_timeout=1)
        with pytest.raises(BackendTimeout, match="did not finish within 0.4 s"):
            await collect(backend)
        await upstream.wait_until(lambda: upstream.closed_early, 2)


async def test_cancelling_the_consumer_aborts_a_silent_upstream_at_once(counter: TokenCounter) -> None:
    async with FakeOpenAI(replies=[Reply()], chunks=["first", " never"], stall_after=1) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        await collect(backend)  # warm up: the first call may start lasting helpers (resolver threads)
        before = asyncio.all_tasks()
        got_first = asyncio.Event()

        async def on_text(text: str) -> None:
            got_first.set()

        task = asyncio.ensure_future(call_model(backend, MESSAGES, meter=UsageMeter(counter), on_text=on_text))
        await asyncio.wait_for(got_first.wait(), 5)
        request = upstream.requests[-1]
        assert not request.finished  # the upstream is silent, waiting
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client_tasks() == set()  # nothing of the HTTP client outlives the cancelled call
        await upstream.wait_until(lambda: request.closed_early, 2)
        assert time.monotonic() - cancelled_at < 0.5
        assert request.pieces_sent == 1
        await upstream.wait_idle()
        await no_new_tasks(before)


async def test_cancelling_before_the_answer_starts_aborts_too() -> None:
    async with FakeOpenAI(first_byte_delay=30) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        before = asyncio.all_tasks()
        task = asyncio.ensure_future(collect(backend))
        await upstream.wait_until(lambda: bool(upstream.requests), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client_tasks() == set()
        await upstream.wait_until(lambda: upstream.closed_early, 1)
        await upstream.wait_idle()
        await no_new_tasks(before)


async def test_cancelling_while_connecting_leaves_nothing_behind() -> None:
    async with FakeOpenAI() as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        before = asyncio.all_tasks()
        for spins in range(6):  # cancel at successive points of the connection's set-up
            task = asyncio.ensure_future(collect(backend))
            for _ in range(spins):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert client_tasks() == set(), spins
        await upstream.wait_idle()
        await no_new_tasks(before)


async def test_a_consumer_that_stops_reading_early_closes_the_upstream() -> None:
    async with FakeOpenAI(chunks=["a", "b", "c", "d"], delay=0.2) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        async with contextlib.aclosing(backend.stream(MESSAGES)) as stream:
            async for event in stream:
                assert event == TextDelta("a")
                break
        await upstream.wait_until(lambda: upstream.closed_early, 1)


async def test_concurrent_calls_do_not_queue_behind_each_other() -> None:
    # Tornado's shared client runs 10 requests at a time; each call here has its own.
    async with FakeOpenAI(echo=True, stall_after=1) as upstream:
        backend = OpenAIBackend(upstream.base_url, "m")
        streams = [backend.stream([{"role": "user", "content": f"user{i} words"}]) for i in range(12)]
        firsts = await asyncio.wait_for(asyncio.gather(*(s.__anext__() for s in streams)), 5)
        assert firsts == [TextDelta("You")] * 12  # all twelve answers are under way at once
        upstream.release()
        rests = await asyncio.wait_for(asyncio.gather(*(_drain(s) for s in streams)), 5)
    for i, rest in enumerate(rests):
        assert text_of([TextDelta("You"), *rest]) == f"You said: user{i} words"


async def test_the_api_key_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeOpenAI(status=401, error_message=f"bad key {KEY}") as upstream:
        with pytest.raises(BackendError):
            await collect(OpenAIBackend(upstream.base_url, "m", api_key=KEY))
    async with FakeOpenAI(first_byte_delay=5) as upstream:
        with pytest.raises(BackendTimeout):
            await collect(OpenAIBackend(upstream.base_url, "m", api_key=KEY, first_token_timeout=0.1))
    assert KEY not in caplog.text


async def _drain(stream: Any) -> list[BackendEvent]:
    try:
        return [event async for event in stream]
    finally:
        await stream.aclose()


async def _ignore(text: str) -> None:
    pass


def _event_stream(*datas: str) -> str:
    """An upstream answer: "a", then events holding ``datas``, then "b" with its finish_reason."""
    chunk = json.dumps({"choices": [{"index": 0, "delta": {"content": "a"}}]})
    last = json.dumps({"choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}]})
    return "".join(f"data: {data}\n\n" for data in (chunk, *datas, last, "[DONE]"))


# Each event's data is one JSON value on its own: events that are JSON only when joined (one
# value cut in two, or two values in one event) are malformed, even when they arrive in one read.
@pytest.mark.parametrize("datas", [('{"a":[1', '2]}'), ("{},{}",), ('{"a":[1', '2]}', "{},{}")],
                         ids=["one-value-in-two-events", "two-values-in-one-event", "both"])
async def test_every_event_is_parsed_alone(datas: tuple[str, ...]) -> None:
    body = _event_stream(*datas)
    async with FakeOpenAI(raw_body=body, content_type="text/event-stream") as upstream:
        with pytest.raises(BackendError, match="malformed JSON in the stream"):
            await collect(OpenAIBackend(upstream.base_url, "m"))
    async with FakeOpenAI(raw_body=_event_stream("{}", "{}"), content_type="text/event-stream") as upstream:
        assert text_of(await collect(OpenAIBackend(upstream.base_url, "m"))) == "ab"  # the same, well formed
