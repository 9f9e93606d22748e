"""A backend for any OpenAI-compatible chat-completions server, streamed over HTTP.

OpenAI, Ollama (``/v1``), vLLM, llama.cpp's server and LM Studio all answer
``POST {base_url}/chat/completions`` with ``"stream": true`` as server-sent events. This
backend sends that request over a kept-alive connection (:mod:`.upstream`, :mod:`.http1`),
parses the events as the bytes arrive and yields text as soon as it comes.

Each call in flight has a connection of its own (concurrent calls never queue behind a shared
limit); a finished call leaves its connection open for the next one. Cancelling a call
closes exactly its socket, so the upstream sees the client leave and stops generating. The API key is sent in the ``Authorization`` header
only; it never appears in an error message, a log line or ``repr()``.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import math
import urllib.parse
from typing import Any

from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders, ResponseStartLine
from tornado.simple_httpclient import HTTPTimeoutError

from ..errors import BackendError, BackendTimeout
from ..futures import until_done
from ..fastjson import dumps_bytes, loads
from ..request_trace import upstream_headers
from ..tornado_internals import new_headers
from .base import (Backend, BackendEvent, CallOptions, EventStream, FinishReason, Message, PromptTokens, ReportedUsage,
                   TextDelta, TextDeltas, ToolCall, ToolCallsRequested, ToolSchema, exception_of)
from .prompt_count import UpstreamPromptCounter

try:
    from .chunks import Chunk, decode_chunk_lines, decode_chunks
except ImportError:  # pragma: no cover - without msgspec (the fast extra): events are read one by one
    decode_chunks = decode_chunk_lines = None  # type: ignore[assignment]

from .reachability import Reachability, describe_failure
from .sse import ServerSentEvent, SSEError, SSEParser
from .upstream import shared_pool
from .upstream_errors import upstream_error

log = logging.getLogger("monoai_tornado.backends.openai")

#: Bytes queued for a slow consumer before the upstream socket is no longer read.
HIGH_WATER = 1024 * 1024
#: Largest error or JSON body kept from the upstream.
MAX_BODY = 256 * 1024
#: Seconds given to an aborted request to wind down before its client is closed.
ABORT_GRACE = 1.0
#: Longest upstream reason quoted in an error message.
MAX_REASON = 200


class _Exchange:
    """One streaming POST: body chunks are queued, in order, for the generator to read."""

    def __init__(self, request: HTTPRequest) -> None:
        self._loop = asyncio.get_running_loop()
        #: Body chunks not yet read, in order; None last once the response is over.
        self.chunks: collections.deque[bytes | None] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.status: int | None = None
        self.headers = new_headers(())  # (replaced by the answer's)
        #: A success that is not plain JSON, read as server-sent events (known with the headers).
        self.is_event_stream = False
        self._buffered = 0
        self._resume: asyncio.Future[None] | None = None
        request.streaming_callback = self._on_chunk
        self.call = shared_pool().fetch(request, self._on_headers)
        self.fetch: asyncio.Future[HTTPResponse] = self.call.future
        self.fetch.add_done_callback(lambda _: self._put(None))

    def _on_headers(self, start_line: ResponseStartLine, headers: HTTPHeaders) -> None:
        self.status = start_line.code
        self.headers = headers
        ok = 200 <= start_line.code < 300
        self.is_event_stream = ok and not headers.get("Content-Type", "").startswith("application/json")

    def _put(self, chunk: bytes | None) -> None:
        self.chunks.append(chunk)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_chunk(self, chunk: bytes) -> asyncio.Future[None] | None:
        self._put(chunk)
        self._buffered += len(chunk)
        if self._buffered > HIGH_WATER:  # stop reading the socket until the consumer catches up
            self._resume = self._loop.create_future()
            return self._resume
        return None

    async def next_chunk(self, deadline: float) -> bytes | None:
        """The next body chunk, or None once the response is over; TimeoutError at ``deadline``.

        One future and one timer per wait, and none when a chunk is already here (cheaper per
        chunk than an ``asyncio.Queue`` under ``asyncio.timeout_at``).
        """
        chunks = self.chunks
        if not chunks:
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_at(deadline, _time_out, waiter) if deadline < math.inf else None
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        chunk = chunks.popleft()
        if chunk is not None and chunks and chunks[0] is not None:  # what is already read goes as one piece
            parts = [chunk]
            while chunks and (more := chunks[0]) is not None:  # the end stays last
                chunks.popleft()
                parts.append(more)
            chunk = b"".join(parts)
        if chunk is not None:
            self._buffered -= len(chunk)
            if self._resume is not None and self._buffered <= HIGH_WATER // 2:
                self._wake()
        return chunk

    def _wake(self) -> None:
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)
        self._resume = None

    async def close(self) -> None:
        """Abort the request if it is still running, then release the client."""
        try:
            if not self.fetch.done() and not self.call.answered:  # (answered: its task ends by itself)
                self.call.abort()  # the socket is closed here, synchronously
                self._wake()
                await until_done(self.fetch, ABORT_GRACE)
        finally:
            if self.fetch.done():
                exception_of(self.fetch)  # an abort's exception, marked as seen
                self._let_go()
            else:
                self.fetch.add_done_callback(exception_of)
                self.fetch.add_done_callback(self._let_go)

    def _let_go(self, _: object = None) -> None:
        """Drop the request's callbacks into this exchange once the call is over: they close a
        cycle (exchange, call, answer, request, callback) that refcounting alone cannot free, so
        each call would otherwise wait for the cyclic garbage collector."""
        self.call.request.streaming_callback = None
        self.call.answer.on_headers = None


class _Assembler:
    """Turns chat-completion chunks into backend events; collects tool calls and usage."""

    def __init__(self) -> None:
        self.done = False
        self.seen_data = False
        self.usage: ReportedUsage | None = None
        #: The first choice's ``finish_reason`` once the upstream sent one.
        self.finish_reason: str | None = None
        #: The stop sequence that ended the answer, when the upstream names it.
        self.stop_sequence: str | None = None
        self._calls: dict[int, dict[str, str]] = {}

    def on_data(self, data: str, redact: Any) -> list[BackendEvent]:
        """The events of one ``data`` payload, parsed alone: one event's data is one JSON object."""
        self.seen_data = True
        if data.strip() == "[DONE]":
            self.done = True
            return []
        obj = _json_object(data)
        if obj is None:  # the message is built only when it is needed, not for every event
            raise BackendError(f"upstream sent malformed JSON in the stream: {redact(_short(data))!r}")
        return self.on_object(obj, redact)

    def on_object(self, obj: dict[str, Any], redact: Any) -> list[BackendEvent]:
        if obj.get("error"):
            raise BackendError(f"upstream reported an error: {redact(_reason_of(obj))}")
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = ReportedUsage.of(usage) or self.usage
        events: list[BackendEvent] = []
        choices = obj.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # only the first choice is served
            if isinstance(choice.get("finish_reason"), str) and choice["finish_reason"]:
                self.finish_reason = choice["finish_reason"]
                if isinstance(choice.get("stop_reason"), str) and choice["stop_reason"]:  # vLLM: the stop matched
                    self.stop_sequence = choice["stop_reason"]
            delta = choice.get("delta") or choice.get("message") or {}
            if not isinstance(delta, dict):
                continue
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(TextDelta(content))
            calls = delta.get("tool_calls")
            for position, call in enumerate(calls if isinstance(calls, list) else ()):
                if isinstance(call, dict):
                    self._add_call(call, position)
        return events

    def on_chunks(self, chunks: list[Chunk]) -> list[BackendEvent]:
        """The events of chunks decoded by :func:`~.chunks.decode_chunks`: the texts
        :meth:`on_object` finds in the same objects (which have no error, tool calls nor
        ``message``), several as one :class:`TextDeltas` (each still its own chunk for a
        streaming client: they cross the layers above in one step)."""
        self.seen_data = True
        texts: list[str] = []
        for chunk in chunks:
            if chunk.usage is not None:
                self.usage = ReportedUsage.of(chunk.usage) or self.usage
            for choice in chunk.choices or ():
                if choice.index != 0:
                    continue
                if choice.finish_reason:
                    self.finish_reason = choice.finish_reason
                    if isinstance(choice.stop_reason, str) and choice.stop_reason:
                        self.stop_sequence = choice.stop_reason
                delta = choice.delta
                if delta is not None and delta.content:
                    texts.append(delta.content)
        if len(texts) > 1:
            return [TextDeltas(tuple(texts))]
        return [TextDelta(texts[0])] if texts else []

    def _add_call(self, delta: dict[str, Any], position: int) -> None:
        index = delta.get("index", position)
        slot = self._calls.setdefault(index if isinstance(index, int) else position,
                                      {"id": "", "name": "", "arguments": ""})
        function = delta.get("function")
        function = function if isinstance(function, dict) else {}
        if isinstance(delta.get("id"), str) and not slot["id"]:
            slot["id"] = delta["id"]
        if isinstance(function.get("name"), str) and not slot["name"]:
            slot["name"] = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            slot["arguments"] += arguments
        elif arguments is not None:  # some servers send the arguments as an object
            slot["arguments"] += json.dumps(arguments)

    def final_events(self) -> list[BackendEvent]:
        events: list[BackendEvent] = []
        if self._calls:
            calls = tuple(ToolCall(slot["id"] or f"call_{index}", slot["name"], slot["arguments"])
                          for index, slot in sorted(self._calls.items()))
            events.append(ToolCallsRequested(calls))
        if self.usage is not None:
            events.append(self.usage)
        if self.finish_reason not in (None, "stop", "tool_calls") or self.stop_sequence is not None:
            events.append(FinishReason(str(self.finish_reason or "stop"), self.stop_sequence))
        return events


class OpenAIBackend(Backend):
    """A model served by an OpenAI-compatible ``/chat/completions`` endpoint, streamed.

    >>> backend = OpenAIBackend("http://127.0.0.1:11434/v1", "llama3.2")
    >>> backend.describe()
    {'provider': 'openai-compatible', 'name': 'llama3.2'}

    Timeouts, in seconds: ``first_token_timeout`` until the first byte of the answer (connect
    included), ``idle_timeout`` between two reads once it flows, ``timeout`` for the whole
    call (None, the default: no total limit, a healthy stream may run as long as it flows).
    Any of them gives :class:`BackendTimeout` (504). The upstream's HTTP errors are mapped by
    :func:`~monoai_tornado.backends.upstream_errors.upstream_error`; a stream that ends
    without a ``finish_reason`` (cut off upstream) is a :class:`BackendError`, never an answer.

    ``defaults`` are the generation options of every request (``--max-tokens``,
    ``--temperature``, ``--extra-body``); a call's own :class:`CallOptions` win over them,
    field by field. ``extra_body`` is merged into ``defaults.extra``.

    ``prompt_tokens`` (``--prompt-tokens``): how the prompt of an answer that reports no usage
    is counted: ``"estimate"`` (tiktoken, the default), or asked of the upstream with
    ``"chat"``, ``"vllm"`` or ``"llama-server"`` (see :mod:`.prompt_count`).

    ``upstream_stream`` (``--upstream-stream``): ``"always"`` (the default) streams every call,
    so the timeouts above hold for every answer; ``"as-client"`` asks for a whole JSON answer
    when the caller reads only the whole answer (``CallOptions.stream`` False: a non-streamed
    client), as most gateways do: a quarter less CPU per such request, but with no first token
    to wait for, the whole answer must come within ``timeout`` when it is set, else within
    ``first_token_timeout``.
    """

    supports_tools = True

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float | None = None,
                 first_token_timeout: float = 30.0, idle_timeout: float = 30.0,
                 extra_body: dict[str, Any] | None = None, provider: str = "openai-compatible",
                 defaults: CallOptions | None = None, prompt_tokens: str = "estimate",
                 upstream_stream: str = "always") -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL, not {_safe_url(base_url)!r}")
        if not model:
            raise ValueError("model must be a non-empty string")
        for label, value in (("timeout", timeout), ("first_token_timeout", first_token_timeout),
                             ("idle_timeout", idle_timeout)):
            if value is not None and not value > 0:
                raise ValueError(f"{label} must be > 0 (or None)" if label == "timeout" else f"{label} must be > 0")
        if upstream_stream not in UPSTREAM_STREAM:
            raise ValueError(f"upstream_stream must be one of {UPSTREAM_STREAM}, not {upstream_stream!r}")
        self.upstream_stream = upstream_stream
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.name = self.encoding_model = model
        self.provider = provider
        self.timeout, self.first_token_timeout, self.idle_timeout = timeout, first_token_timeout, idle_timeout
        defaults = defaults or CallOptions()
        self.defaults = dataclasses.replace(defaults, extra={**defaults.extra, **(extra_body or {})})
        self._api_key = api_key or None
        self._where = _safe_url(self.url)
        #: Asks the upstream for the prompt's tokens when an answer reports no usage (None: estimated).
        self.prompt_counter = None if prompt_tokens == "estimate" else UpstreamPromptCounter(
            prompt_tokens, self.base_url, self._auth(), redact=self._redact)
        self.reachability = Reachability(self.base_url)

    def __repr__(self) -> str:
        return f"OpenAIBackend({_safe_url(self.base_url)!r}, {self.name!r})"

    async def unreachable(self) -> str | None:
        problem = await self.reachability.problem()
        return None if problem is None else f"cannot connect to upstream {_safe_url(self.base_url)}: {problem}"

    async def count_prompt(self, messages: list[Message], tools: list[ToolSchema] | None = None,
                           options: CallOptions | None = None) -> int | None:
        """With ``--prompt-tokens`` other than estimate, the upstream's count (asked now)."""
        if self.prompt_counter is None:
            return None
        return await self.prompt_counter.count(self.payload(messages, tools, options))

    def payload(self, messages: list[Message], tools: list[dict[str, Any]] | None = None,
                options: CallOptions | None = None) -> dict[str, Any]:
        """The JSON body sent upstream for ``messages``: the call's options over the defaults.

        ``max_tokens`` is the smaller of the two: the run's completion cap within the server's.
        A tool the server forces (``--extra-body '{"tool_choice": ...}'``, ``"required"``) is forced
        on the first call of a turn only: once the tools have answered (the last message is a tool
        result), the model is asked for its answer (``"none"``; a model that needs a forced choice
        cannot choose, and llama-cpp-python streams nothing for ``"auto"``). Forced on every call,
        an agent would call the tool until its last iteration. A call's own choice stands.
        """
        body: dict[str, Any] = {"model": self.name, "messages": messages}
        if self._whole(options):
            body["stream"] = False
        else:
            body.update(stream=True, stream_options={"include_usage": True})
        if tools:
            body["tools"] = tools
        body.update(self.defaults.extra)
        body.update(_option_fields(self.defaults))
        if messages and messages[-1].get("role") == "tool" and _forces_a_tool(body.get("tool_choice")):
            body["tool_choice"] = "none"
        configured = body.get("max_tokens")
        if options is not None:
            body.update(options.extra)
            body.update(_option_fields(options))
            if options.max_tokens is not None and isinstance(configured, int) and configured > 0:
                body["max_tokens"] = min(options.max_tokens, configured)  # the run's cap, within the server's
        return body

    def _whole(self, options: CallOptions | None) -> bool:
        """Whether this call asks for a whole JSON answer (see ``upstream_stream``)."""
        return self.upstream_stream == "as-client" and options is not None and not options.stream

    def _request(self, messages: list[Message], tools: list[dict[str, Any]] | None,
                 options: CallOptions | None = None) -> HTTPRequest:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **self._auth(),
                   **upstream_headers()}  # the request id and trace context of the request served
        body = dumps_bytes(self.payload(messages, tools, options))
        # The pool bounds the connect with connect_timeout; the first-token, idle and total
        # timeouts are ours (stream()), so that the error says which one it was.
        return HTTPRequest(self.url, method="POST", headers=headers, body=body, follow_redirects=False,
                           connect_timeout=self.first_token_timeout + 1)

    def _auth(self) -> dict[str, str]:
        """The headers every upstream request carries (the key, when there is one)."""
        headers = {"User-Agent": "monoai_tornado"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    async def stream(self, messages: list[Message], *, tools: list[ToolSchema] | None = None,
                     options: CallOptions | None = None) -> EventStream:
        loop = asyncio.get_running_loop()
        started = loop.time()
        end = started + self.timeout if self.timeout else math.inf
        exchange = _Exchange(self._request(messages, tools, options))
        first_token_timeout = self.first_token_timeout
        if self._whole(options):  # no first token: the whole answer is the first byte
            first_token_timeout = self.timeout or self.first_token_timeout
        assembler = _Assembler()
        parser = SSEParser()
        body = bytearray()  # an error body, or a whole JSON answer
        first = True
        try:
            while True:
                now = loop.time()
                if now >= end:  # chunks kept coming, but too long
                    raise self._timeout(first, now - started)
                phase_end = started + first_token_timeout if first else now + self.idle_timeout
                try:
                    chunk = await exchange.next_chunk(min(phase_end, end))
                except TimeoutError:
                    raise self._timeout(first, loop.time() - started) from None
                if chunk is None:
                    for event in self._finish(exchange, assembler, parser, bytes(body)):
                        yield event
                    break
                first = False
                if not exchange.is_event_stream:
                    if len(body) < MAX_BODY:
                        body += chunk[: MAX_BODY - len(body)]
                    continue
                events, sses = self._events_of_read(parser, chunk, assembler)
                if events is not None:
                    for event in events:
                        yield event
                else:  # one by one: what came before a malformed event still goes out first
                    for sse in sses:
                        for event in self._on_sse(sse, assembler):
                            yield event
                        if assembler.done:
                            break
                if assembler.done:
                    for event in self._final_events(assembler):
                        yield event
                    break
        finally:
            await exchange.close()
        if assembler.usage is None and self.prompt_counter is not None:  # asked once the stream is over
            counted = await self.prompt_counter.count(self.payload(messages, tools, options))
            if counted is not None:
                yield PromptTokens(counted)

    def _events_of_read(self, parser: SSEParser, chunk: bytes,
                        assembler: _Assembler) -> tuple[list[BackendEvent] | None, list[ServerSentEvent]]:
        """The events of one read decoded at once (the common stream, with msgspec: no event
        objects), or else None and its server-sent events, to be read one by one."""
        if decode_chunks is None:
            return None, self._sse_events(parser, chunk)
        lines = parser.feed_data_lines(chunk)
        if lines is not None:  # the common stream
            events = _decoded_lines_at_once(lines, assembler)
            return events, [] if events is not None else parser.events_of(lines[0].decode("utf-8").split("\n"))
        sses = self._sse_events(parser, chunk)
        return _decoded_at_once(_plain_datas(sses), assembler), sses

    def _sse_events(self, parser: SSEParser, chunk: bytes | None) -> list[ServerSentEvent]:
        """The events completed by ``chunk`` (None: the end of the stream)."""
        try:
            return parser.feed(chunk) if chunk is not None else parser.close()
        except SSEError as exc:
            raise BackendError(f"upstream {self._where} sent an invalid event stream: {exc}") from None

    def _on_sse(self, sse: ServerSentEvent, assembler: _Assembler) -> list[BackendEvent]:
        """The backend events of one upstream event."""
        if sse.event == "error":
            raise BackendError(f"upstream reported an error: {self._redact(_reason_of_text(sse.data))}")
        return assembler.on_data(sse.data, self._redact)

    def _finish(self, exchange: _Exchange, assembler: _Assembler, parser: SSEParser,
                body: bytes) -> list[BackendEvent]:
        """The last events once the response is over, or the error it ended with."""
        try:
            response = exchange.fetch.result()
        except HTTPTimeoutError:
            raise BackendTimeout(f"upstream {self._where} did not answer in time") from None
        except Exception as exc:
            if exchange.status is None:
                raise BackendError(f"cannot connect to upstream {self._where}: {self._redact(_describe(exc))}") from None
            raise BackendError(f"upstream {self._where} closed the connection before the end of the "
                               f"stream ([DONE]): {self._redact(_describe(exc))}") from None
        status = response.code
        if not 200 <= status < 300:
            message = self._redact(_reason_of_text(body.decode("utf-8", "replace")))
            raise upstream_error(status, response.reason, self._where, exchange.headers, message)
        if not exchange.is_event_stream:  # a server that ignored "stream": true
            obj = _json_object(body)
            if obj is None:
                raise BackendError(f"upstream {self._where} answered malformed JSON")
            return assembler.on_object(obj, self._redact) + self._final_events(assembler)
        events: list[BackendEvent] = []
        for sse in self._sse_events(parser, None):
            if not assembler.done:
                events += self._on_sse(sse, assembler)
        if not assembler.done:
            if not assembler.seen_data:
                content_type = exchange.headers.get("Content-Type", "none")
                raise BackendError(f"upstream {self._where} answered {status} with no chat-completion events "
                                   f"(Content-Type {_short(content_type)})")
            raise BackendError(f"upstream {self._where} ended the stream before [DONE]")
        return events + self._final_events(assembler)

    def _final_events(self, assembler: _Assembler) -> list[BackendEvent]:
        """The tool calls and usage of a finished answer; an error if it never said it finished."""
        if assembler.finish_reason is None:
            # llama.cpp ends a request it dropped (another one arrived) with a bare [DONE].
            raise BackendError(f"upstream {self._where} ended the stream without a finish_reason: "
                               "the answer was cut off upstream")
        return assembler.final_events()

    def _timeout(self, first: bool, elapsed: float) -> BackendTimeout:
        if self.timeout and elapsed >= self.timeout:
            message = f"upstream {self._where} did not finish within {self.timeout:g} s"
        elif first:
            message = f"upstream {self._where} sent nothing within {self.first_token_timeout:g} s"
        else:
            message = f"upstream {self._where} stalled for {self.idle_timeout:g} s mid-stream"
        log.info("%s", message)
        return BackendTimeout(message)


def _plain_datas(sses: list[ServerSentEvent]) -> list[str] | None:
    """The data of ``sses`` when none is an ``error`` event (else None: read them one by one)."""
    datas = []
    for sse in sses:
        if sse.event == "error":
            return None
        datas.append(sse.data)
    return datas


def _decoded_at_once(datas: list[str] | None, assembler: _Assembler) -> list[BackendEvent] | None:
    """The events of a read's data events, their JSON decoded in one step (:mod:`.chunks`, with
    msgspec), up to ``[DONE]``; None when they must be read one by one (no msgspec, an ``error``
    event, anything :func:`~.chunks.decode_chunks` leaves to the general way)."""
    if decode_chunks is None or not datas:
        return None
    done = False
    for index, data in enumerate(datas):
        if "[DONE]" in data and data.strip() == "[DONE]":
            datas, done = datas[:index], True
            break
    chunks = decode_chunks(datas) if datas else []
    if chunks is None:
        return None
    events = assembler.on_chunks(chunks)
    assembler.done = done
    return events


def _decoded_lines_at_once(lines: tuple[bytes, int], assembler: _Assembler) -> list[BackendEvent] | None:
    """:func:`_decoded_at_once` of the data :meth:`SSEParser.feed_data_lines` gave (one event a
    line), ended by a ``[DONE]`` only when it is the last; None when they must be read one by one."""
    data, count = lines
    done = data == b"[DONE]" or data.endswith(b"\n[DONE]")
    if done:
        data, count = data[:-7], count - 1  # (the LF before it too)
    if b"[DONE]" in data:  # another [DONE]: the general way finds which one ends the stream
        return None
    chunks = decode_chunk_lines(data, count) if count else []
    if chunks is None:
        return None
    events = assembler.on_chunks(chunks)
    assembler.done = done
    return events


#: The choices of ``upstream_stream``.
UPSTREAM_STREAM = ("always", "as-client")


def _time_out(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _forces_a_tool(choice: Any) -> bool:
    """True for a ``tool_choice`` that makes the model call a tool: a named function, or ``"required"``."""
    return choice == "required" or (isinstance(choice, dict) and choice.get("type") == "function")


def _option_fields(options: CallOptions) -> dict[str, Any]:
    """The request fields ``options`` sets (the extras aside)."""
    named: dict[str, Any] = {"max_tokens": options.max_tokens, "temperature": options.temperature,
                             "top_p": options.top_p, "top_k": options.top_k,
                             "tool_choice": None if options.tool_choice is None else options.tool_choice.to_openai()}
    fields = {name: value for name, value in named.items() if value is not None}
    if options.stop:
        fields["stop"] = list(options.stop)
    return fields


def _reason_of(obj: Any) -> str:
    """A short human reason from an error body: OpenAI, Ollama, vLLM and FastAPI shapes."""
    if isinstance(obj, dict):
        for key in ("error", "message", "detail"):
            value = obj.get(key)
            if isinstance(value, str) and value.strip():
                return _short(value)
            if isinstance(value, dict) and value:
                return _reason_of(value)
        return _short(json.dumps(obj))
    return _short(str(obj))


def _json_object(text: str | bytes) -> dict[str, Any] | None:
    """``text`` decoded as a JSON object, else None."""
    try:
        obj = loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _reason_of_text(text: str) -> str:
    try:
        return _reason_of(json.loads(text))
    except ValueError:
        return _short(text) or "no reason given"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _describe(exc: BaseException) -> str:
    return describe_failure(exc)


def _safe_url(url: str) -> str:
    """``url`` without credentials, query or fragment, fit for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
