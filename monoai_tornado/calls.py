"""One model call: stream a backend's events to a callback and account for their tokens.

The model endpoints and the agent loop both call models through :func:`call_model`, so text
forwarding, tool-call collection and usage accounting exist once. :class:`UsageMeter` keeps
the usage of every call of a run, including the one still streaming, so that a run cut short
(cancel, disconnect, shutdown) is still billed for the prompt and the text generated so far.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from .backends.base import Backend, CallOptions, Message, ReportedUsage, TextDelta, TextDeltas, ToolCall, ToolCallsRequested
from .errors import BackendError
from .usage import TokenCounter, Usage

TextCallback = Callable[[str], Awaitable[None]]


class RunEvents(Protocol):
    """Where a run reports progress; each transport (JSON, SSE, WebSocket) implements it.

    Awaiting these calls is how backpressure works: a slow client slows its own run.
    """

    async def on_text(self, text: str) -> None:
        """A piece of answer text, in order."""

    async def on_step(self, step: dict[str, Any]) -> None:
        """An agent step (an ``iterations`` entry, or a ``tool_started`` announcement)."""


class UsageMeter:
    """Sums the usage of a run's model calls; counts the call in flight on demand."""

    def __init__(self, counter: TokenCounter, *, admitted_prompt_tokens: int | None = None) -> None:
        self.counter = counter
        #: The prompt's tokens as counted at admission, for a call whose prompt is that alone.
        self.admitted_prompt_tokens = admitted_prompt_tokens
        self.finished = Usage()
        self._live_messages: list[Message] | None = None
        self._live_prompt_tokens: int | None = None
        self._live_parts: list[str] = []
        self.started_at = time.monotonic()
        #: When the run produced its first text (``time.monotonic()``), for latency metrics.
        self.first_text_at: float | None = None

    def begin(self, messages: list[Message], prompt_tokens: int | None = None) -> list[str]:
        """A model call starts with these messages (``prompt_tokens`` of them when already known);
        returns the list its text parts go to."""
        self._live_messages = messages
        self._live_prompt_tokens = prompt_tokens
        self._live_parts = []
        return self._live_parts

    def add_text(self, text: str) -> None:
        """The call in flight produced ``text`` (counted lazily, never per chunk)."""
        if self.first_text_at is None:
            self.first_text_at = time.monotonic()
        self._live_parts.append(text)

    def add_texts(self, texts: tuple[str, ...]) -> None:
        """Several pieces at once, in order (empty ones skipped)."""
        texts = tuple(text for text in texts if text) if "" in texts else texts
        if texts and self.first_text_at is None:
            self.first_text_at = time.monotonic()
        self._live_parts.extend(texts)

    def end(self, reported: ReportedUsage | None, tool_calls: tuple[ToolCall, ...] = ()) -> Usage:
        """The call in flight finished; returns its usage (reported, else estimated)."""
        if reported is not None:
            usage = Usage(max(0, int(reported.prompt_tokens)), max(0, int(reported.completion_tokens)))
        else:
            usage = self._estimate_live(tool_calls)
        self.finished = self.finished + usage
        self._live_messages = None
        self._live_parts = []
        return usage

    def _estimate_live(self, tool_calls: tuple[ToolCall, ...] = ()) -> Usage:
        if self._live_messages is None:
            return Usage()
        if self._live_prompt_tokens is None:
            self._live_prompt_tokens = self.counter.count_messages(self._live_messages)
        completion = self.counter.count("".join(self._live_parts))
        for call in tool_calls:
            completion += self.counter.count(call.name) + self.counter.count(call.arguments)
        return Usage(self._live_prompt_tokens, completion, estimated=True)

    @property
    def total(self) -> Usage:
        """Finished calls plus an estimate of the call still in flight, if any."""
        return self.finished + self._estimate_live()


@dataclass
class CallOutcome:
    """What one model call produced."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage


async def call_model(
    backend: Backend,
    messages: list[Message],
    *,
    meter: UsageMeter,
    on_text: TextCallback | None,
    tools: list[dict[str, Any]] | None = None,
    options: CallOptions | None = None,
    prompt_tokens: int | None = None,
) -> CallOutcome:
    """Run one backend call, awaiting ``on_text`` (when given) for every piece of text, in order.

    ``prompt_tokens``: the messages' tokens when already counted (at admission).
    Cancelling the calling task closes the backend's stream at once.
    """
    parts = meter.begin(messages, prompt_tokens)
    calls: list[ToolCall] = []
    reported: ReportedUsage | None = None
    if options is not None:
        stream = backend.stream(messages, tools=tools, options=options)
    else:  # backends written before CallOptions existed take no such keyword
        stream = backend.stream(messages, tools=tools) if tools else backend.stream(messages)
    async with contextlib.aclosing(stream):
        async for event in stream:
            if type(event) is TextDelta or isinstance(event, TextDelta):  # the common case first
                texts: tuple[str, ...] = (event.text,)
            elif isinstance(event, TextDeltas):
                texts = event.texts
            elif isinstance(event, ToolCallsRequested):
                calls.extend(event.calls)
                continue
            elif isinstance(event, ReportedUsage):
                reported = event
                continue
            else:
                raise BackendError(f"backend {backend.name!r} yielded an unknown event {type(event).__name__}")
            if on_text is None:  # a whole-JSON answer: nothing to do per piece
                meter.add_texts(texts)
                continue
            for text in texts:
                if text:
                    meter.add_text(text)
                    await on_text(text)
    text = "".join(parts)
    usage = meter.end(reported, tuple(calls))
    return CallOutcome(text, tuple(calls), usage)
