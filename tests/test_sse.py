"""Server-sent events on the /stream paths."""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from monoai_tornado import DemoBackend
from monoai_tornado.backends.base import Backend, TextDelta
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.http import json_of, parse_sse, sse_until

SSE = {"Accept": "text/event-stream"}


class GatedBackend(Backend):
    """Sends one chunk, then waits for the test to open the gate before the rest."""

    provider, name = "test", "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.finished = False
        self.cancelled = False

    async def stream(self, messages: Any, *, tools: Any = None) -> AsyncIterator[TextDelta]:
        try:
            yield TextDelta("first ")
            await asyncio.wait_for(self.gate.wait(), 10)
            yield TextDelta("second")
            self.finished = True
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_events_chunk_then_complete(app_url, fetch):
    url = app_url()
    response = await fetch(url + "/model/stream", "POST", {"prompt": "sse please"}, headers=SSE)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    events = parse_sse(response.body)
    names = [name for name, _ in events]
    assert names[-1] == "complete" and set(names[:-1]) == {"chunk"} and len(names) > 5
    result = events[-1][1]["result"]
    assert "".join(data["content"] for name, data in events[:-1]) == result["response"]
    assert result["usage"]["total_tokens"] > 0


async def test_without_the_accept_header_the_answer_is_whole_json(app_url, fetch):
    url = app_url()
    response = await fetch(url + "/model/stream", "POST", {"prompt": "json please"})
    assert response.headers["Content-Type"].startswith("application/json")
    assert "json please" in json_of(response)["response"]


async def test_plain_model_path_ignores_the_accept_header(app_url, fetch):
    url = app_url()
    response = await fetch(url + "/model", "POST", {"prompt": "x"}, headers=SSE)
    assert response.headers["Content-Type"].startswith("application/json")


async def test_first_chunk_arrives_before_the_backend_finishes(app_url):
    backend = GatedBackend()
    url = app_url(model=backend)
    received: list[bytes] = []
    seen_before_end: list[bool] = []

    def on_data(data: bytes) -> None:
        received.append(data)
        if b"first" in b"".join(received) and not backend.gate.is_set():
            seen_before_end.append(not backend.finished)
            backend.gate.set()

    request = HTTPRequest(url + "/model/stream", method="POST", body=json.dumps({"prompt": "x"}),
                          headers=SSE, streaming_callback=on_data, request_timeout=20)
    await AsyncHTTPClient().fetch(request)
    events = parse_sse(b"".join(received))
    assert seen_before_end == [True]
    assert [name for name, _ in events] == ["chunk", "chunk", "complete"]
    assert backend.finished


async def test_backend_error_mid_stream_is_an_error_event(app_url, fetch):
    url = app_url(model=ScriptedBackend(["a", "b", "c"], failure="timeout", fail_after=2))
    response = await fetch(url + "/model/stream", "POST", {"prompt": "x"}, headers=SSE)
    events = parse_sse(response.body)
    assert [name for name, _ in events] == ["chunk", "chunk", "error"]
    assert events[-1][1]["code"] == "backend_timeout"


async def test_errors_before_the_stream_keep_their_status(app_url, fetch):
    url = app_url()
    response = await fetch(url + "/model/stream", "POST", b"{", headers=SSE)
    assert response.code == 400 and json_of(response)["code"] == "invalid_json"


@pytest.mark.slow  # takes a second or more
async def test_keepalive_comments_during_silence(app_url):
    backend = GatedBackend()
    url = app_url(model=backend, sse_keepalive_interval=0.05)
    received: list[bytes] = []

    def on_data(data: bytes) -> None:
        received.append(data)
        if b"".join(received).count(b": keep-alive") >= 2:
            backend.gate.set()

    request = HTTPRequest(url + "/model/stream", method="POST", body=json.dumps({"prompt": "x"}),
                          headers=SSE, streaming_callback=on_data, request_timeout=20)
    await AsyncHTTPClient().fetch(request)
    body = b"".join(received)
    assert body.count(b": keep-alive") >= 2
    assert [name for name, _ in parse_sse(body)] == ["chunk", "chunk", "complete"]


async def test_client_going_away_cancels_the_backend(app_url):
    backend = GatedBackend()
    url = app_url(model=backend)
    await sse_until(url, {"prompt": "x"}, b"first")
    for _ in range(200):
        if backend.cancelled:
            break
        await asyncio.sleep(0.01)
    assert backend.cancelled and not backend.finished


async def test_pieces_handed_over_together_still_stream_one_event_each(app_url, fetch):
    """A backend may yield TextDeltas (several pieces at once); each piece stays its own chunk."""
    url = app_url(model=DemoBackend(delay=0, chunks=8, chunk_chars=5))
    response = await fetch(url + "/model/stream", "POST", {"prompt": "batch"}, headers=SSE)
    events = parse_sse(response.body)
    chunks = [data["content"] for name, data in events if name == "chunk"]
    assert len(chunks) == 8 and all(len(c) == 5 for c in chunks)
    assert events[-1][0] == "complete" and "".join(chunks) == events[-1][1]["result"]["response"]
    whole = json_of(await fetch(url + "/model", "POST", {"prompt": "batch"}))
    assert whole["response"] == "".join(chunks) and whole["usage"]["completion_tokens"] > 0


async def test_chunks_written_together_keep_every_character_and_their_order(app_url, fetch):
    """Chunk events of one loop pass leave in one write; each is still whole JSON, in order."""
    pieces = ['quote " and \\ backslash', "line\nbreak", "tab\there", "caf\u00e9 \u2603 \U0001f600", "</script>", "x" * 3000]
    url = app_url(model=ScriptedBackend(pieces))
    response = await fetch(url + "/model/stream", "POST", {"prompt": "escapes"}, headers=SSE)
    events = parse_sse(response.body)
    assert [data["content"] for name, data in events if name == "chunk"] == pieces
    assert events[-1][0] == "complete" and events[-1][1]["result"]["response"] == "".join(pieces)
