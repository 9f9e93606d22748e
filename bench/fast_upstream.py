"""A fast OpenAI-compatible upstream for the gateway benchmark: prebuilt answers, no delay.

    python bench/fast_upstream.py --port 9000 [--chunks 16] [--chunk-chars 4]

``POST /v1/chat/completions`` (and ``/chat/completions``) answers ``--chunks`` pieces of
``--chunk-chars`` characters, the same for every request:

- with ``"stream": true`` in the body: server-sent events, one ``chat.completion.chunk`` per
  piece, then one with ``finish_reason`` ``"stop"``, then the last chunk with ``"choices": []``
  and the ``usage`` (as OpenAI sends with ``stream_options.include_usage``), then
  ``data: [DONE]``. Each event is its own HTTP chunk (``Transfer-Encoding: chunked``), as a
  real model server flushes them, but all are written in one call;
- otherwise one ``chat.completion`` JSON object with the whole text and the ``usage``.

Every answer is built once at start-up; a request costs a header scan and one write. It is a
raw asyncio protocol (HTTP/1.1 keep-alive, ``Connection: close`` honoured), so that the
upstream is not what the benchmark measures. It listens on 127.0.0.1 only; ``GET /health``
answers 200, anything else 404.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
from typing import Any

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
MODEL = "bench-model"
CREATED = 1_700_000_000
PROMPT_TOKENS = 12
_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
_MAX_HEAD = 64 * 1024
_MAX_BODY = 4 * 1024 * 1024


def pieces(chunks: int, chunk_chars: int) -> list[str]:
    """The answer's pieces: ``abcd``, ``efgh``, ... (as the demo backend)."""
    return ["".join(ALPHABET[(i * chunk_chars + j) % 26] for j in range(chunk_chars)) for i in range(chunks)]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


Answer = tuple[bytes, bytes]
"""An answer split where a ``Connection: close`` header goes: (status and headers, the rest)."""


def build_answers(chunks: int, chunk_chars: int) -> tuple[Answer, Answer]:
    """The (whole JSON, event stream) answers."""
    texts = pieces(chunks, chunk_chars)
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": chunks, "total_tokens": PROMPT_TOKENS + chunks}
    whole = _dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": MODEL,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(texts)},
                                 "finish_reason": "stop"}], "usage": usage})
    json_answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(whole),
                   whole)

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        obj = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
               "choices": choices, **extra}
        return _http_chunk(b"data: " + _dumps(obj) + b"\n\n")

    events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}])
              if i == 0 else chunk([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
              for i, text in enumerate(texts)]
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    events.append(chunk([], usage=usage))
    events.append(_http_chunk(b"data: [DONE]\n\n"))
    events.append(b"0\r\n\r\n")
    sse_head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"Transfer-Encoding: chunked\r\n")
    sse_answer = (sse_head, b"".join(events))
    return (json_answer[0], b"\r\n" + json_answer[1]), (sse_answer[0], b"\r\n" + sse_answer[1])


_NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 21\r\n",
              b'\r\n{"error":"not found"}')
_HEALTH = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n", b"\r\nok")
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_CLOSE = b"Connection: close\r\n"


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: requests parsed from a buffer, answered with prebuilt bytes."""

    __slots__ = ("answers", "buffer", "transport")

    def __init__(self, answers: tuple[Answer, Answer]) -> None:
        self.answers = answers
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        transport = self.transport
        assert transport is not None
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    transport.write(_BAD)
                    transport.close()
                    buf = b""
                break
            head = buf[:end].lower()
            length = 0
            at = head.find(b"\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r", at + 16)
                try:
                    length = int(head[at + 16:stop if stop >= 0 else None])
                except ValueError:
                    length = -1
            if not 0 <= length <= _MAX_BODY:
                transport.write(_BAD)
                transport.close()
                buf = b""
                break
            if len(buf) < end + 4 + length:
                break
            body = buf[end + 4:end + 4 + length]
            buf = buf[end + 4 + length:]
            close = b"\nconnection: close" in head or head.find(b" http/1.0") >= 0
            answer = self._answer(head, body)
            transport.write(answer[0] + _CLOSE + answer[1] if close else answer[0] + answer[1])
            if close:
                transport.close()
                buf = b""
                break
        self.buffer = buf

    def _answer(self, head: bytes, body: bytes) -> Answer:
        line = head[:head.find(b"\r\n")] if b"\r\n" in head else head
        if line.startswith(b"post ") and (b" /v1/chat/completions " in line or b" /chat/completions " in line):
            return self.answers[1] if _STREAM_TRUE.search(body) else self.answers[0]
        if line.startswith(b"get /health"):
            return _HEALTH
        return _NOT_FOUND


async def main() -> None:
    parser = argparse.ArgumentParser(description="fast OpenAI-compatible test upstream")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--chunks", type=int, default=16, help="pieces per answer (default 16)")
    parser.add_argument("--chunk-chars", type=int, default=4, help="characters per piece (default 4)")
    args = parser.parse_args()
    answers = build_answers(args.chunks, args.chunk_chars)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(answers), "127.0.0.1", args.port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
