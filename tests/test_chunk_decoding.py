"""The data events of one read decoded at once (``backends/chunks.py``, msgspec) give what
reading them one by one gives: the same backend events, usage, finish and stop reasons, and the
same error, over streams of well-formed, odd and broken chunks; and a read's bytes taken as lines
(``SSEParser.feed_data_lines``) give what its events parsed as text give."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoai_tornado.backends.base import BackendEvent, TextDeltas
from monoai_tornado.backends.openai import (OpenAIBackend, _Assembler, _decoded_at_once, _decoded_lines_at_once,
                                            _plain_datas)
from monoai_tornado.backends.sse import ServerSentEvent, SSEParser
from monoai_tornado.errors import BackendError
from tests.support.events import pieces

pytest.importorskip("msgspec")

BACKEND = OpenAIBackend("http://127.0.0.1:9/v1", "m")

texts = st.text(max_size=6)
#: A choice as upstreams send them (the fast way takes it).
good_choice = st.fixed_dictionaries(
    {"index": st.sampled_from([0, 0, 0, 1])},
    optional={
        "delta": st.fixed_dictionaries({}, optional={"content": st.one_of(texts, st.none()),
                                                     "role": st.just("assistant"), "tool_calls": st.none()}),
        "finish_reason": st.sampled_from([None, "stop", "length", ""]),
        "stop_reason": st.sampled_from([None, "END", 128009, ""]),
        "logprobs": st.none(),
    })
#: A choice no upstream should send (the one-by-one way reads it, or refuses it).
odd_choice = st.fixed_dictionaries(
    {"index": st.sampled_from(["0", None, 0])},
    optional={
        "delta": st.one_of(st.just("text"), st.none(), st.just({"content": 3}), st.just({"tool_calls": []})),
        "message": st.sampled_from([None, {"content": "whole"}]),
        "finish_reason": st.sampled_from([None, "stop", 7]),
    })
good_chunk = st.fixed_dictionaries(
    {"id": st.just("chatcmpl-1"), "object": st.just("chat.completion.chunk"), "created": st.just(1),
     "model": st.just("m"), "choices": st.lists(good_choice, max_size=2)},
    optional={"usage": st.one_of(st.none(), st.just({"prompt_tokens": 3, "completion_tokens": 2}),
                                 st.just({"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}))})
odd_chunk = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.one_of(st.lists(st.one_of(good_choice, odd_choice), max_size=2), st.none(), st.just("no")),
        "usage": st.one_of(st.none(), st.just([1]), st.just({"prompt_tokens": "x"})),
        "error": st.sampled_from([None, {"message": "boom"}, ""]),
    })
data = st.one_of(
    good_chunk.map(json.dumps), good_chunk.map(json.dumps), good_chunk.map(json.dumps), st.just("[DONE]"),
    odd_chunk.map(json.dumps),
    good_chunk.map(lambda c: json.dumps(c, indent=1)),  # over several lines
    st.sampled_from([" [DONE] ", "", "{", "3", "null", '{"choices": []} {"choices": []}', "NaN",
                     '{"choices":[{"delta":{"content":"\\ud800"}}]}']),
)
event = st.one_of(data.map(ServerSentEvent), data.map(ServerSentEvent), data.map(ServerSentEvent),
                  st.just(ServerSentEvent('{"message":"x"}', "error")))


def one_by_one(sses: list[ServerSentEvent], assembler: _Assembler) -> list[BackendEvent]:
    events: list[BackendEvent] = []
    for sse in sses:
        events += BACKEND._on_sse(sse, assembler)
        if assembler.done:
            break
    return events


def outcome(read: Any, given: Any) -> tuple[Any, ...]:
    """What ``read(given, assembler)`` comes to: its pieces and what the assembler learnt, or its error."""
    assembler = _Assembler()
    try:
        events = read(given, assembler)
    except BackendError as exc:
        return ("error", str(exc))
    return (pieces(events), assembler.usage, assembler.finish_reason, assembler.stop_sequence, assembler.done,
            assembler.seen_data)


def at_once_or_one_by_one(sses: list[ServerSentEvent], assembler: _Assembler) -> list[BackendEvent]:
    events = _decoded_at_once(_plain_datas(sses), assembler)
    return one_by_one(sses, assembler) if events is None else events


@settings(max_examples=600, deadline=None)
@given(st.lists(event, max_size=6))
def test_at_once_and_one_by_one_agree(sses: list[ServerSentEvent]) -> None:
    assert outcome(at_once_or_one_by_one, sses) == outcome(one_by_one, sses)


def test_an_empty_event_beside_one_of_two_values_is_not_decoded_at_once() -> None:
    """Counted together, an empty event and an event of two values looked like two events of one
    value each (one by one, the empty one is an error): a blank line is now refused first."""
    sses = [ServerSentEvent(""), ServerSentEvent('{"choices": []} {"choices": []}')]
    assert _decoded_at_once(_plain_datas(sses), _Assembler()) is None
    assert outcome(at_once_or_one_by_one, sses) == outcome(one_by_one, sses)


def usual_chunks(*texts: str) -> list[dict[str, Any]]:
    """An answer's chunks as upstreams send them: a piece each, then the finish with the usage."""
    chunks: list[dict[str, Any]] = [
        {"id": "c", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]} for text in texts]
    chunks.append({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    return chunks


def test_the_common_stream_is_decoded_at_once() -> None:
    """A usual read (content chunks, a finish, usage, [DONE]) takes the fast way."""
    sses = [ServerSentEvent(json.dumps(c)) for c in usual_chunks("Hel", "lo")] + [ServerSentEvent("[DONE]")]
    assembler = _Assembler()
    events = _decoded_at_once(_plain_datas(sses), assembler)
    assert events == [TextDeltas(("Hel", "lo"))]  # one step for the read's pieces
    assert assembler.done and assembler.finish_reason == "stop"
    assert assembler.usage is not None and assembler.usage.completion_tokens == 2


def _read_as_text(chunk: bytes, assembler: _Assembler) -> list[BackendEvent]:
    """A read the general way: its events parsed as text, their data decoded at once or one by one."""
    sses = BACKEND._sse_events(SSEParser(), chunk)
    events = _decoded_at_once(_plain_datas(sses), assembler)
    return one_by_one(sses, assembler) if events is None else events


def _read_as_lines(chunk: bytes, assembler: _Assembler) -> list[BackendEvent]:
    """A read the way the backend reads it (as lines of bytes when it can)."""
    events, sses = BACKEND._events_of_read(SSEParser(), chunk, assembler)
    return one_by_one(sses, assembler) if events is None else events


#: An event as bytes: mostly ``data: `` lines (the way of ``feed_data_lines``), sometimes not.
event_bytes = st.tuples(data, st.sampled_from(["data: "] * 6 + ["data:", "data:  ", ": c\ndata: "])).map(
    lambda pair: (pair[1] + pair[0] + "\n\n").encode("utf-8", "surrogatepass"))


@settings(max_examples=600, deadline=None)
@given(st.lists(event_bytes, min_size=1, max_size=6), st.sampled_from([b"", b"\xff", "\u00e9".encode()]))
def test_a_read_taken_as_lines_gives_what_its_events_as_text_give(events: list[bytes], odd: bytes) -> None:
    chunk = b"".join(events)
    chunk = chunk[:-2] + odd + b"\n\n" if odd else chunk  # sometimes a non-ASCII byte, or one that is not UTF-8
    assert outcome(_read_as_lines, chunk) == outcome(_read_as_text, chunk)


def test_the_common_read_is_taken_as_lines() -> None:
    """A usual read (content chunks, a finish, usage, [DONE]) is decoded as one text of lines."""
    chunk = b"".join(b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n"
                     for c in usual_chunks("Hel", "lo\u00e9"))
    lines = SSEParser().feed_data_lines(chunk + b"data: [DONE]\n\n")
    assert lines is not None and lines[1] == 4
    assembler = _Assembler()
    assert _decoded_lines_at_once(lines, assembler) == [TextDeltas(("Hel", "lo\u00e9"))]
    assert assembler.done and assembler.finish_reason == "stop"
    assert assembler.usage is not None and assembler.usage.completion_tokens == 2
    for odd in (b"data:" + chunk[6:], b": c\n" + chunk, chunk + b"\xff\n\n", chunk[:-1],
                chunk.replace(b"\n\n", b"\r\n\r\n")):
        assert SSEParser().feed_data_lines(odd) is None  # the general way reads these
