"""Pieces of text that come together (one upstream read, a :class:`TextDeltas`) are written in
one step by every streaming front, each still a delta of its own, in order, every character kept;
a cap that falls among them still cuts the stream where the whole answer is cut."""
from __future__ import annotations

import json
from typing import Any, AsyncIterator

import pytest

from monoai_tornado.backends.base import Backend, BackendEvent, TextDeltas
from tests.support.http import parse_sse

SSE = {"Accept": "text/event-stream"}
TRICKY = ['quote " and \\ backslash', "line\nbreak", "", "caf\u00e9 \u2603 \U0001f600", "</script>", "x" * 300]
WORDS = ["one", " two", " three", " four", " five", " six", " seven", " eight", " nine", " ten"]


class BatchedBackend(Backend):
    """Yields each of ``batches`` as one :class:`TextDeltas` (as an upstream read of several events)."""

    provider, name = "test", "batched"

    def __init__(self, batches: list[list[str]]) -> None:
        self.batches = batches

    async def stream(self, messages: Any, *, tools: Any = None, options: Any = None) -> AsyncIterator[BackendEvent]:
        for batch in self.batches:
            yield TextDeltas(tuple(batch))


def _v1_deltas(body: bytes) -> tuple[list[str], str | None]:
    """The content deltas of a ``/v1/chat/completions`` stream and its finish reason."""
    texts, finish = [], None
    for block in body.decode().split("\n\n"):
        if not block.startswith("data: ") or block == "data: [DONE]":
            continue
        chunk = json.loads(block[6:])
        for choice in chunk["choices"]:
            if choice["delta"].get("content"):
                texts.append(choice["delta"]["content"])
            finish = choice["finish_reason"] or finish
    return texts, finish


async def _streamed(fetch: Any, url: str, front: str, max_tokens: int | None = None) -> list[str]:
    """The text deltas ``front`` streams, in order."""
    if front == "model":
        body: dict[str, Any] = {"prompt": "hi"}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        response = await fetch(url + "/model/stream", "POST", body, headers=SSE)
        return [data["content"] for name, data in parse_sse(response.body) if name == "chunk"]
    if front == "chat":
        body = {"model": "batched", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        response = await fetch(url + "/v1/chat/completions", "POST", body)
        return _v1_deltas(response.body)[0]
    if front == "messages":
        body = {"model": "batched", "stream": True, "max_tokens": max_tokens or 4096,
                "messages": [{"role": "user", "content": "hi"}]}
        response = await fetch(url + "/v1/messages", "POST", body)
        return [data["delta"]["text"] for name, data in parse_sse(response.body)
                if name == "content_block_delta" and data["delta"]["type"] == "text_delta"]
    body = {"model": "batched", "stream": True, "input": "hi", "store": False}
    if max_tokens is not None:
        body["max_output_tokens"] = max_tokens
    response = await fetch(url + "/v1/responses", "POST", body)
    return [data["delta"] for name, data in parse_sse(response.body) if name == "response.output_text.delta"]


@pytest.mark.parametrize("front", ["model", "chat", "messages", "responses"])
async def test_pieces_of_one_read_stream_one_delta_each_every_character_kept(app_url, fetch, front):
    url = app_url(model=BatchedBackend([TRICKY, ["end", "."]]))
    assert await _streamed(fetch, url, front) == [piece for piece in TRICKY if piece] + ["end", "."]


@pytest.mark.parametrize("front", ["model", "chat", "messages", "responses"])
async def test_a_cap_among_pieces_of_one_read_cuts_the_stream_where_the_whole_answer_is_cut(app_url, fetch, front):
    url = app_url(model=BatchedBackend([WORDS]))
    streamed = await _streamed(fetch, url, front, max_tokens=3)
    assert streamed == WORDS[:3]  # a token each: the cap falls inside the read
    whole = await fetch(url + "/v1/chat/completions", "POST",
                        {"model": "batched", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
    answer = json.loads(whole.body)
    assert answer["choices"][0]["message"]["content"] == "".join(streamed)
    assert answer["choices"][0]["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 3
