"""A real OpenAI-compatible upstream for tests: chat completions streamed as SSE, with knobs.

It is a small Tornado app on a free 127.0.0.1 port, in the test's own event loop::

    async with FakeOpenAI(chunks=["Hel", "lo"], delay=0.01) as upstream:
        backend = OpenAIBackend(upstream.base_url, "test")     # http://127.0.0.1:PORT/v1
        ...
        assert upstream.requests[0].body["stream"] is True
        assert not upstream.closed_early

Knobs (keyword arguments, see :class:`Reply`) set how every request is answered;
``replies=[Reply(...), ...]`` scripts the first answers one by one (an agent's tool-call turn,
then its final answer), the knobs answer the rest. Every request is recorded in
:attr:`FakeOpenAI.requests` with what was sent and whether the client left early.

It also answers the tokenize endpoints of vLLM (``POST /tokenize`` with ``messages``: ``count``)
and llama.cpp's server (``POST /apply-template``, ``POST /tokenize`` with ``content``), in their
real shapes, with a toy chat template (:func:`render`) and one token per word: the count of a
conversation is :func:`template_tokens`. ``tokenize_status`` (an error status) makes them fail.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

import tornado.testing
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.web import Application, RequestHandler

#: Longest any pause of the fake upstream lasts, whatever the knobs say (bounded tests).
MAX_PAUSE = 60.0


def render(messages: Sequence[Any]) -> str:
    """The toy chat template of the tokenize endpoints (ChatML, with a system prompt of its own)."""
    turns = [{"role": "system", "content": "You are a fake upstream."}, *messages]
    return "".join(f"<|im_start|>{m.get('role')}\n{m.get('content') or ''}<|im_end|>\n" for m in turns
                   if isinstance(m, dict)) + "<|im_start|>assistant\n"


def template_tokens(messages: Sequence[Any]) -> int:
    """What the tokenize endpoints count for ``messages``: one token per word of :func:`render`."""
    return len(render(messages).split())


@dataclass
class Reply:
    """How the upstream answers one request.

    Positions (``*_after``) count the answer's pieces: text chunks, then tool-call deltas; a
    position at or past the last piece means "just before ``data: [DONE]``".
    """

    chunks: Sequence[str] = ("Hello", ", ", "world", "!")
    delay: float = 0.0  # seconds between pieces
    first_byte_delay: float = 0.0  # seconds before the status line
    status: int = 200  # another status answers an error body
    error_message: str = "upstream failure"
    error_headers: dict[str, str] = field(default_factory=dict)  # headers of an error answer
    raw_body: str | None = None  # answer this body (with ``status``) instead of OpenAI's JSON
    content_type: str = "text/plain"  # the Content-Type of ``raw_body``
    malformed_after: int | None = None  # send a broken JSON event at this position
    error_after: int | None = None  # send an in-stream error event ({"error": ...}) at this position
    cut_after: int | None = None  # end the answer at this position, without [DONE]
    cut_mode: str = "finish"  # "finish": a clean end of response; "drop": close the socket
    usage: tuple[int, int] | None = (11, 7)  # (prompt, completion); None omits the usage chunk
    cached_tokens: int | None = None  # prompt tokens reported as prompt_tokens_details.cached_tokens
    stall_after: int | None = None  # pause at this position...
    stall: float | None = None  # ...for this long (None: until release() or the client leaves)
    tool_calls: Sequence[dict[str, Any]] = ()  # [{"id", "name", "arguments"}]; arguments in 3 parts
    split_bytes: int | None = None  # write every event in flushed pieces of this many bytes
    crlf: bool = False  # CRLF line endings
    comments: bool = False  # a ": keep-alive" comment and an empty delta before every piece
    json_answer: bool = False  # ignore "stream": answer one application/json completion
    honour_stream: bool = False  # answer one application/json completion when the body asks "stream": false
    echo: bool = False  # answer "You said: <last user message>" word by word
    finish: bool = True  # False: no finish_reason before [DONE] (llama.cpp's dropped request)
    stop_reason: str | None = None  # vLLM's stop_reason beside finish_reason "stop": the stop sequence matched
    finish_reason: str | None = None  # the finish_reason sent (default: "tool_calls" or "stop")


@dataclass
class RecordedRequest:
    """One request the upstream received, and how its answer went."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the JSON body, or the raw text when it is not JSON
    pieces_sent: int = 0
    finished: bool = False  # the whole answer was written
    closed_early: bool = False  # the client closed the connection before the answer was complete
    done: bool = False  # the handler has returned, whatever way
    released: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


class FakeOpenAI:
    """The upstream server; use ``async with`` (or ``await start()`` / ``await stop()``)."""

    def __init__(self, *, replies: Iterable[Reply] = (), model: str = "test-model", **knobs: Any) -> None:
        self.default = Reply(**knobs)
        self.replies = list(replies)
        self.model = model
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self.stopping = False
        #: The status of the tokenize endpoints (200: they answer; another: an error body).
        self.tokenize_status = 200
        self._server: HTTPServer | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, what an OpenAI client takes as its base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def closed_early(self) -> bool:
        """Whether any client closed its connection before its answer was complete."""
        return any(r.closed_early for r in self.requests)

    def configure(self, **knobs: Any) -> None:
        """Change how the next requests are answered."""
        self.default = replace(self.default, **knobs)

    def release(self) -> None:
        """End the pauses (``stall=None``) of the requests received so far."""
        for record in self.requests:
            record.released = True
            record.wake.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` is true; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s; requests: {self.requests}")
            await asyncio.sleep(0.005)

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every request's handler has returned."""
        await self.wait_until(lambda: all(r.done for r in self.requests), timeout)

    def next_reply(self) -> Reply:
        return self.replies.pop(0) if self.replies else self.default

    async def start(self) -> "FakeOpenAI":
        self.stopping = False
        sock, self.port = tornado.testing.bind_unused_port()
        app = Application([
            (r"/v1/chat/completions", _ChatCompletions, {"upstream": self}),
            (r"/v1/models", _Models, {"upstream": self}),
            (r"/(tokenize|apply-template)", _Tokenize, {"upstream": self}),
        ], log_function=lambda handler: None)
        self._server = HTTPServer(app)
        self._server.add_sockets([sock])
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.stop()
        self.stopping = True
        for record in self.requests:
            record.wake.set()
        await asyncio.wait_for(self._server.close_all_connections(), 5)
        self._server = None

    async def __aenter__(self) -> "FakeOpenAI":
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()


class _Models(RequestHandler):
    def initialize(self, upstream: FakeOpenAI) -> None:
        self.upstream = upstream

    def get(self) -> None:
        self.write({"object": "list", "data": [{"id": self.upstream.model, "object": "model"}]})


class _Tokenize(RequestHandler):
    """vLLM's ``/tokenize`` (``messages``), llama.cpp's ``/tokenize`` (``content``) and ``/apply-template``."""

    def initialize(self, upstream: FakeOpenAI) -> None:
        self.upstream = upstream

    def post(self, endpoint: str) -> None:
        body = json.loads(self.request.body)
        self.upstream.requests.append(RecordedRequest("POST", self.request.path, dict(self.request.headers.get_all()),
                                                      body, finished=True, done=True))
        if self.upstream.tokenize_status != 200:
            self.set_status(self.upstream.tokenize_status)
            self.write({"error": {"message": "tokenize failed", "type": "server_error"}})
        elif endpoint == "apply-template":
            self.write({"prompt": render(body["messages"])})
        elif "messages" in body:  # vLLM
            count = template_tokens(body["messages"])
            self.write({"count": count, "max_model_len": 4096, "tokens": list(range(count))})
        else:  # llama.cpp
            self.write({"tokens": list(range(len(body["content"].split())))})


class _ChatCompletions(RequestHandler):
    def initialize(self, upstream: FakeOpenAI) -> None:
        self.upstream = upstream
        self.record: RecordedRequest | None = None

    def on_connection_close(self) -> None:
        if self.record is not None and not self.record.finished:
            self.record.closed_early = True
            self.record.wake.set()

    async def post(self) -> None:
        try:
            body: Any = json.loads(self.request.body)
        except ValueError:
            body = self.request.body.decode("utf-8", "replace")
        self.record = record = RecordedRequest(self.request.method or "POST", self.request.path,
                                               dict(self.request.headers.get_all()), body)
        self.upstream.requests.append(record)
        reply = self.upstream.next_reply()
        try:
            await self._answer(reply, record, body if isinstance(body, dict) else {})
        except StreamClosedError:
            record.closed_early = True
        finally:
            record.done = True

    async def _answer(self, reply: Reply, record: RecordedRequest, body: dict[str, Any]) -> None:
        if reply.first_byte_delay:
            await self._pause(record, reply.first_byte_delay)
        if record.closed_early:
            return
        if reply.status != 200 or reply.raw_body is not None:
            self.set_status(reply.status)
            for name, value in reply.error_headers.items():
                self.set_header(name, value)
            if reply.raw_body is not None:
                self.set_header("Content-Type", reply.content_type)
                self.write(reply.raw_body)
            else:
                self.write({"error": {"message": reply.error_message, "type": "server_error", "code": None}})
            record.finished = True
            return
        pieces = self._pieces(reply, body)
        if reply.json_answer or (reply.honour_stream and body.get("stream") is False):
            self.write(self._completion(reply, body))
            record.finished = True
            return
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.request.connection.stream.set_nodelay(True)  # type: ignore[attr-defined]
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        reason = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        tail = [self._chunk({}, reason)] if reply.finish else []
        if tail and reply.stop_reason is not None:
            tail[0]["choices"][0]["stop_reason"] = reply.stop_reason
        if wants_usage and reply.usage is not None:
            prompt, completion = reply.usage
            usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion}
            if reply.cached_tokens is not None:
                usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens}
            tail.append(self._chunk(None, None, usage=usage))
        await self._event(reply, json.dumps(self._chunk({"role": "assistant", "content": ""}, None)))
        for position in range(len(pieces) + 1):
            at_end = position == len(pieces)
            if reply.stall_after is not None and position == min(reply.stall_after, len(pieces)):
                await self._pause(record, reply.stall, until_released=reply.stall is None)
            if record.closed_early:
                return
            if reply.malformed_after is not None and position == min(reply.malformed_after, len(pieces)):
                await self._event(reply, '{"id": "broken", "choices": [{"delta": {"content": "oops"')
            if reply.error_after is not None and position == min(reply.error_after, len(pieces)):
                await self._event(reply, json.dumps({"error": {"message": reply.error_message, "type": "server_error"}}))
            if reply.cut_after is not None and position == min(reply.cut_after, len(pieces)):
                if at_end:
                    for event in tail:
                        await self._event(reply, json.dumps(event))
                if reply.cut_mode == "drop":
                    self.detach().close()
                record.finished = True
                return
            if at_end:
                break
            if position and reply.delay:
                await self._pause(record, reply.delay)
                if record.closed_early:
                    return
            if reply.comments:
                await self._send(reply, ": keep-alive\n\n")
                await self._event(reply, json.dumps(self._chunk({}, None)))
            await self._event(reply, json.dumps(self._chunk(pieces[position], None)))
            record.pieces_sent += 1
        for event in tail:
            await self._event(reply, json.dumps(event))
        await self._event(reply, "[DONE]")
        record.finished = True

    def _pieces(self, reply: Reply, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The deltas of the answer: text chunks, then each tool call in several parts."""
        chunks = list(reply.chunks)
        if reply.echo:
            prompt = next((m.get("content", "") for m in reversed(body.get("messages") or [])
                           if isinstance(m, dict) and m.get("role") == "user"), "")
            words = f"You said: {prompt}".split(" ")
            chunks = [w if i == 0 else " " + w for i, w in enumerate(words)]
        deltas: list[dict[str, Any]] = [{"content": c} for c in chunks]
        for index, call in enumerate(reply.tool_calls):
            arguments = call.get("arguments", "")
            third = max(1, len(arguments) // 3)
            parts = [arguments[:third], arguments[third:2 * third], arguments[2 * third:]]
            deltas.append({"tool_calls": [{"index": index, "id": call.get("id", f"call_{index}"), "type": "function",
                                           "function": {"name": call["name"], "arguments": ""}}]})
            deltas.extend({"tool_calls": [{"index": index, "function": {"arguments": part}}]} for part in parts)
        return deltas

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None, usage: Any = None) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.upstream.model, "choices": choices, "usage": usage}

    def _completion(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        text = "".join(p.get("content", "") for p in self._pieces(reply, body))
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reply.tool_calls:
            message["tool_calls"] = [{"id": c.get("id", f"call_{i}"), "type": "function",
                                      "function": {"name": c["name"], "arguments": c.get("arguments", "")}}
                                     for i, c in enumerate(reply.tool_calls)]
        answer: dict[str, Any] = {"id": "chatcmpl-fake", "object": "chat.completion", "model": self.upstream.model,
                                  "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        if reply.usage is not None:
            answer["usage"] = {"prompt_tokens": reply.usage[0], "completion_tokens": reply.usage[1],
                               "total_tokens": sum(reply.usage)}
        return answer

    async def _event(self, reply: Reply, data: str) -> None:
        await self._send(reply, f"data: {data}\n\n")

    async def _send(self, reply: Reply, text: str) -> None:
        data = text.encode("utf-8")
        if reply.crlf:
            data = data.replace(b"\n", b"\r\n")
        step = reply.split_bytes or len(data)
        for start in range(0, len(data), step):
            self.write(data[start:start + step])
            await self.flush()
            if reply.split_bytes:
                await asyncio.sleep(0.001)  # separate TCP segments, read separately

    async def _pause(self, record: RecordedRequest, seconds: float | None, *, until_released: bool = False) -> None:
        """Sleep, but wake at once when the client leaves, the server stops, or release()."""
        if until_released and record.released:
            return
        record.wake.clear()
        if record.closed_early or self.upstream.stopping or (until_released and record.released):
            return
        try:
            await asyncio.wait_for(record.wake.wait(), min(seconds or MAX_PAUSE, MAX_PAUSE))
        except asyncio.TimeoutError:
            pass
