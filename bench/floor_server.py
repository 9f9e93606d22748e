"""The floor: a bare Tornado server answering what ours answers, and doing nothing else.

    python bench/floor_server.py --port 8001

``POST /model`` answers the same JSON as ``python -m monoai_tornado --demo-chunks 64
--demo-chunk-chars 4`` (same ``response`` text, same keys, a ``usage`` object), and
``WS /model/ws`` sends the same 64 ``{"type":"chunk","content":...}`` messages, one message
per chunk, awaiting each ``write_message()``, then ``{"type":"complete","result":{...}}``.
``POST /v1/chat/completions`` streams the same 64 pieces as ``chat.completion.chunk`` events,
one flushed write each, then ``data: [DONE]``.

No rate limiting, no token counting (the usage figures are a cheap length estimate), no CORS,
no identity, no prompt queue: whatever ours costs beyond this is the price of its features.
Like any sensible streaming server it turns Nagle's algorithm off on WebSockets.
"""
from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import tornado.iostream
import tornado.web
import tornado.websocket

from bare import serve_until_stopped

CHUNKS = 64
CHUNK_CHARS = 4
ALPHABET = "abcdefghijklmnopqrstuvwxyz"
#: The pieces of DemoBackend(chunks=64, chunk_chars=4)._fixed_answer().
PIECES = ["".join(ALPHABET[(i * CHUNK_CHARS + j) % 26] for j in range(CHUNK_CHARS)) for i in range(CHUNKS)]
RESPONSE = "".join(PIECES)
MODEL = {"provider": "demo", "name": "monoai-demo"}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def parse_prompt(raw: bytes | str) -> str | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    prompt = body.get("prompt") if isinstance(body, dict) else None
    return prompt if isinstance(prompt, str) and prompt.strip() else None


def result(prompt: str) -> dict[str, Any]:
    prompt_tokens = (len(prompt) + 3) // 4
    completion_tokens = (len(RESPONSE) + 3) // 4
    return {
        "prompt": prompt,
        "response": RESPONSE,
        "model": MODEL,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens, "estimated": True},
    }


class ModelHandler(tornado.web.RequestHandler):
    def post(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        prompt = parse_prompt(self.request.body)
        if prompt is None:
            self.set_status(400)
            self.finish(dumps({"error": "Field 'prompt' is required", "code": "missing_prompt"}))
            return
        self.finish(dumps(result(prompt)))


class ModelSocket(tornado.websocket.WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        self.set_nodelay(True)

    async def on_message(self, message: str | bytes) -> None:
        prompt = parse_prompt(message)
        try:
            if prompt is None:
                await self.write_message(dumps({"error": "Field 'prompt' is required", "code": "missing_prompt"}))
                return
            for piece in PIECES:
                await self.write_message(dumps({"type": "chunk", "content": piece}))
            await self.write_message(dumps({"type": "complete", "result": result(prompt)}))
        except tornado.websocket.WebSocketClosedError:
            pass


def chunk_event(delta: dict[str, str], finish_reason: str | None = None) -> str:
    """One ``chat.completion.chunk`` server-sent event."""
    chunk = {"id": "chatcmpl-floor", "object": "chat.completion.chunk", "created": 0, "model": "monoai-demo",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
    return f"data: {dumps(chunk)}\n\n"


class ChatCompletionsHandler(tornado.web.RequestHandler):
    """``POST /v1/chat/completions`` streamed: a role chunk, 64 content chunks (each flushed),
    a finish chunk, ``data: [DONE]`` - the events ours sends for the same answer."""

    async def post(self) -> None:
        try:
            body = json.loads(self.request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("messages"):
            self.set_status(400)
            self.finish(dumps({"error": {"message": "messages is required", "type": "invalid_request_error",
                                         "code": "missing_prompt", "param": None}}))
            return
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.request.connection.stream.set_nodelay(True)  # type: ignore[attr-defined]
        try:
            self.write(chunk_event({"role": "assistant", "content": ""}))
            await self.flush()
            for piece in PIECES:
                self.write(chunk_event({"content": piece}))
                await self.flush()
            self.write(chunk_event({}, "stop") + "data: [DONE]\n\n")
            self.finish()
        except tornado.iostream.StreamClosedError:
            pass


async def main() -> None:
    parser = argparse.ArgumentParser(description="bare Tornado floor server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    app = tornado.web.Application([(r"/model", ModelHandler), (r"/model/ws", ModelSocket),
                                   (r"/v1/chat/completions", ChatCompletionsHandler)])
    await serve_until_stopped(app, args.host, args.port)


if __name__ == "__main__":
    asyncio.run(main())
