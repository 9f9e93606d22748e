"""One model call: stream a backend's events to a callback and account for their tokens.

The model endpoints and the agent loop both call models through :func:`call_model`, so text
forwarding, tool-call collection and usage accounting exist once. :class:`UsageMeter` keeps
the usage of every call of a run, including the one still streaming, so that a run cut short
(cancel, disconnect, shutdown) is still billed for the prompt and the text generated so far.
"""
from __future__ import annotations

import dataclasses
import inspect
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, Protocol

from .backends.base import (Backend, CallOptions, FinishReason, Message, PromptTokens, ReportedUsage, TextDelta,
                            TextDeltas, ToolCall, ToolCallsRequested)
from .errors import BackendError
from .money.prices import Prices, affordable
from .request_trace import current_trace
from .usage import TokenCounter, Usage

TextCallback = Callable[[str], Awaitable[None]]
#: Several pieces of text that came together (one upstream read), in order, in one call.
TextsCallback = Callable[[tuple[str, ...]], Awaitable[None]]


class RunEvents(Protocol):
    """Where a run reports progress; each transport (JSON, SSE, WebSocket) implements it.

    Awaiting these calls is how backpressure works: a slow client slows its own run.
    """

    async def on_text(self, text: str) -> None:
        """A piece of answer text, in order."""

    async def on_step(self, step: dict[str, Any]) -> None:
        """An agent step (an ``iterations`` entry, or a ``tool_started`` announcement)."""


def texts_callback(events: RunEvents) -> TextsCallback | None:
    """``events.on_texts`` when the transport has one: the pieces of one upstream read written in
    one step, each still its own event for the client (the same bytes ``on_text`` would write,
    one call instead of one per piece). A transport without it gets ``on_text`` per piece."""
    on_texts: TextsCallback | None = getattr(events, "on_texts", None)
    return on_texts


class SilentEvents:
    """Run events of a whole-JSON answer: nothing is sent before the end, so the model call
    does not even call back per piece of text."""

    async def on_text(self, text: str) -> None:
        pass

    async def on_step(self, step: dict[str, Any]) -> None:
        pass


class UsageMeter:
    """Sums the usage of a run's model calls; counts the call in flight on demand.

    It also holds the run to its caps: ``max_tokens`` completion tokens over all its calls,
    under a token limit ``budget`` tokens in all (the reservation admission made), and under a
    spend limit ``spend`` nano-dollars in all at ``prices`` (each call's cap is what is left buys).
    Metering is cheap: a token is at least one byte of UTF-8, so the text of the call in
    flight is only counted once the bytes it streamed reach the tokens it had left.
    """

    def __init__(self, counter: TokenCounter, *, admitted_prompt_tokens: int | None = None,
                 max_tokens: int | None = None, budget: int | None = None, prices: Prices | None = None,
                 spend: int | None = None) -> None:
        self.counter = counter
        self.prices = prices
        self.spend = spend if prices is not None else None
        #: The prompt's tokens as counted at admission, for a call whose prompt is that alone.
        self.admitted_prompt_tokens = admitted_prompt_tokens
        self.max_tokens = max_tokens
        self.budget = budget
        self.finished = Usage()
        #: True once the run reached a cap: its answer ends there (``finish_reason: "length"``).
        self.capped = False
        #: The completion cap of the call in flight (None: uncapped).
        self.call_cap: int | None = None
        self._live_messages: list[Message] | None = None
        self._live_prompt_tokens: int | None = None
        self._live_parts: list[str] = []
        #: Bytes the call in flight may still stream before its text must be counted.
        self._room: int | None = None
        #: Tokens counted so far of the call's parts ``[:_counted_parts]`` (piece by piece).
        self._counted_tokens = 0
        self._counted_parts = 0
        #: ``(parts, tokens)``: an exact count of the call's first ``parts`` parts joined.
        self._exact: tuple[int, int] | None = None
        self.started_at = time.monotonic()
        #: When the run produced its first text (``time.monotonic()``), for latency metrics.
        self.first_text_at: float | None = None
        #: The deployment that answered and the attempts it took (set by a routed model).
        self.deployment: str | None = None
        self.attempts = 1

    def begin(self, messages: list[Message], prompt_tokens: int | None = None) -> list[str]:
        """A model call starts with these messages (``prompt_tokens`` of them when already known);
        returns the list its text parts go to. Sets the call's cap from what the run has left."""
        self._live_messages = messages
        self._live_prompt_tokens = prompt_tokens
        self._live_parts = []
        self._counted_tokens = self._counted_parts = 0
        self._exact = None
        cap = None if self.max_tokens is None else self.max_tokens - self.finished.completion_tokens
        if self.budget is not None or self.spend is not None:
            if prompt_tokens is None:
                prompt_tokens = self._live_prompt_tokens = self.counter.count_messages(messages)
        if self.budget is not None:
            assert prompt_tokens is not None
            left = self.budget - self.finished.total_tokens - prompt_tokens
            cap = left if cap is None else min(cap, left)
        if self.spend is not None and self.prices is not None:
            assert prompt_tokens is not None
            done, prices = self.finished, self.prices
            spent = prices.cost_picos(done.prompt_tokens, done.cached_tokens, done.completion_tokens)
            left = affordable(self.spend, prompt_tokens * prices.input, prices.output, spent)
            cap = left if cap is None else min(cap, left)
        self.call_cap = self._room = None if cap is None else max(0, cap)
        return self._live_parts

    def add_text(self, text: str) -> bool:
        """The call in flight produced ``text``; True when that reached the cap (stop the call)."""
        if self.first_text_at is None:
            self.first_text_at = time.monotonic()
        self._live_parts.append(text)
        room = self._room
        if room is None:
            return False
        room -= len(text) if text.isascii() else len(text.encode())
        self._room = room
        return room <= 0 and self._reached()

    def add_texts(self, texts: tuple[str, ...]) -> bool:
        """Several pieces at once, in order (empty ones skipped); True when they reached the cap
        (the pieces after the one that reached it are dropped)."""
        if self.add_below_cap(texts):
            return False
        return any(self.add_text(text) for text in texts if text)

    def add_below_cap(self, texts: tuple[str, ...]) -> bool:
        """Add all of ``texts`` when together they stay below the cap and return True; else add
        none (the caller adds them one by one with :meth:`add_text`, which counts at the cap)."""
        room = self._room
        if room is not None:
            joined = "".join(texts)
            size = len(joined) if joined.isascii() else len(joined.encode())
            if size >= room:
                return False
            self._room = room - size
        texts = tuple(text for text in texts if text) if "" in texts else texts
        if texts and self.first_text_at is None:
            self.first_text_at = time.monotonic()
        self._live_parts.extend(texts)
        return True

    def _reached(self) -> bool:
        """Count the text streamed since the last count; True (and ``capped``) at the cap."""
        assert self.call_cap is not None
        parts = self._live_parts
        self._counted_tokens += self.counter.count("".join(parts[self._counted_parts:]))
        self._counted_parts = len(parts)
        if self._counted_tokens >= self.call_cap:  # pieces counted apart: confirm on the whole text
            self._counted_tokens = self.counter.count("".join(parts))
            self._exact = (len(parts), self._counted_tokens)
        left = self.call_cap - self._counted_tokens
        if left > 0:
            self._room = left
            return False
        self._room = None
        self.capped = True
        return True

    def abandon_call(self) -> None:
        """The call in flight failed before any answer came: it costs nothing (no estimate)."""
        self._live_messages = None
        self._live_parts = []

    def skip_call(self) -> None:
        """The call begun is not made (nothing left under the cap): it costs nothing."""
        self.capped = True
        self._live_messages = None
        self._live_parts = []

    def end(self, reported: ReportedUsage | None, tool_calls: tuple[ToolCall, ...] = (),
            prompt_tokens: int | None = None) -> Usage:
        """The call in flight finished; returns its usage (reported, else estimated: its prompt
        then counts ``prompt_tokens`` when the upstream counted them)."""
        if reported is not None:
            usage = Usage(max(0, int(reported.prompt_tokens)), max(0, int(reported.completion_tokens)),
                          cached_tokens=max(0, int(reported.cached_tokens)))
            if self.call_cap is not None and usage.completion_tokens >= self.call_cap:
                self.capped = True  # the upstream stopped at the max_tokens it was given
        else:
            if prompt_tokens is not None and self._live_messages is not None:
                self._live_prompt_tokens = max(0, int(prompt_tokens))
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
        exact = self._exact
        if exact is not None and exact[0] == len(self._live_parts):
            completion = exact[1]
        else:
            completion = self.counter.count("".join(self._live_parts))
        for call in tool_calls:
            completion += self.counter.count(call.name) + self.counter.count(call.arguments)
        return Usage(self._live_prompt_tokens, completion, estimated=True)

    @property
    def total(self) -> Usage:
        """Finished calls plus an estimate of the call still in flight, if any."""
        return self.finished + self._estimate_live()

    @property
    def finish_reason(self) -> str:
        """``"length"`` when the run stopped at a cap, else ``"stop"``."""
        return "length" if self.capped else "stop"


@dataclass
class CallOutcome:
    """What one model call produced."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    #: ``"length"`` (stopped at the cap), ``"tool_calls"`` or ``"stop"``.
    finish_reason: str = "stop"
    #: The stop sequence a ``"stop"`` ended on, when the upstream said which.
    stop_sequence: str | None = None


#: Whether each backend class's ``stream`` takes ``options`` (backends older than CallOptions do not).
_TAKES_OPTIONS: dict[type, bool] = {}


def _takes_options(backend: Backend) -> bool:
    kind = type(backend)
    known = _TAKES_OPTIONS.get(kind)
    if known is None:
        parameters = inspect.signature(kind.stream).parameters.values()
        known = _TAKES_OPTIONS[kind] = any(
            p.name == "options" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return known


def _call_options(options: CallOptions | None, cap: int | None, stream: bool) -> CallOptions | None:
    """``options`` with ``max_tokens`` no larger than ``cap`` (None: no cap), and ``stream``
    False when only the whole answer is used; changed in one copy at most."""
    if options is None:
        if cap is None:
            return None if stream else WHOLE_ANSWER
        return CallOptions(max_tokens=cap, stream=stream)
    changes: dict[str, Any] = {}
    if cap is not None and (options.max_tokens is None or options.max_tokens > cap):
        changes["max_tokens"] = cap
    if not stream and options.stream:
        changes["stream"] = False
    return dataclasses.replace(options, **changes) if changes else options


def call_model(
    backend: Backend,
    messages: list[Message],
    *,
    meter: UsageMeter,
    on_text: TextCallback | None,
    tools: list[dict[str, Any]] | None = None,
    options: CallOptions | None = None,
    prompt_tokens: int | None = None,
    on_texts: TextsCallback | None = None,
) -> Coroutine[Any, Any, CallOutcome]:
    """Run one backend call, awaiting ``on_text`` (when given) for every piece of text, in order;
    with ``on_texts`` too, the pieces of one read that stay below the cap go to it in one call.

    ``prompt_tokens``: the messages' tokens when already counted (at admission).
    The call is capped by the meter (``max_tokens`` goes to the backend) and stopped, its
    stream closed, once its text reaches the cap. Cancelling the calling task closes the
    backend's stream at once. A traced request's call runs in a span of its own (one per
    upstream attempt); an untraced one costs no extra step.
    """
    call = _call_model(backend, messages, meter=meter, on_text=on_text, tools=tools, options=options,
                       prompt_tokens=prompt_tokens, on_texts=on_texts if on_text is not None else None)
    trace = current_trace.get()
    return call if trace is None else trace.traced_call(backend, options, call)



#: The options of a call whose caller reads only the whole answer and sets nothing else.
WHOLE_ANSWER = CallOptions(stream=False)

async def _call_model(
    backend: Backend,
    messages: list[Message],
    *,
    meter: UsageMeter,
    on_text: TextCallback | None,
    tools: list[dict[str, Any]] | None,
    options: CallOptions | None,
    prompt_tokens: int | None,
    on_texts: TextsCallback | None,
) -> CallOutcome:
    parts = meter.begin(messages, prompt_tokens)
    cap = meter.call_cap
    if cap == 0:  # the run has nothing left for another call
        meter.skip_call()
        return CallOutcome("", (), Usage(), "length")
    options = _call_options(options, cap, on_text is not None)
    calls: list[ToolCall] = []
    reported: ReportedUsage | None = None
    counted: int | None = None
    if options is not None and _takes_options(backend):
        stream = backend.stream(messages, tools=tools, options=options)
    else:  # backends written before CallOptions existed take no such keyword
        stream = backend.stream(messages, tools=tools) if tools else backend.stream(messages)
    capped = False
    finish_reason: str | None = None
    stop_sequence: str | None = None
    try:
        async for event in stream:
            if type(event) is TextDelta or isinstance(event, TextDelta):  # the common case first
                texts: tuple[str, ...] = (event.text,)
            elif isinstance(event, TextDeltas):
                texts = event.texts
                if on_texts is not None and meter.add_below_cap(texts):
                    await on_texts(texts)
                    continue
            elif isinstance(event, ToolCallsRequested):
                calls.extend(event.calls)
                continue
            elif isinstance(event, ReportedUsage):
                reported = event
                continue
            elif isinstance(event, PromptTokens):
                counted = event.tokens
                continue
            elif isinstance(event, FinishReason):
                finish_reason, stop_sequence = event.reason, event.stop_sequence
                continue
            else:
                raise BackendError(f"backend {backend.name!r} yielded an unknown event {type(event).__name__}")
            if on_text is None:  # a whole-JSON answer: nothing to do per piece
                if meter.add_texts(texts):
                    break
                continue
            for text in texts:
                if text:
                    capped = meter.add_text(text)
                    await on_text(text)
                    if capped:
                        break
            if capped:
                break
    except BackendError:
        if not parts and not calls:  # the call got no answer (upstream unreachable...): it costs nothing
            meter.abandon_call()
        raise
    finally:  # (contextlib.aclosing's work, without its two coroutines)
        await stream.aclose()
    text = "".join(parts)
    if finish_reason == "length":
        meter.capped = True  # the model stopped at the cap by its own count (higher than ours)
    if meter.capped:  # cut short: tool calls it may have begun are not run
        calls.clear()
        if reported is None and counted is None:  # cut before the upstream could count the prompt
            count_prompt = getattr(backend, "count_prompt", None)
            if count_prompt is not None:
                counted = await count_prompt(messages, tools, options)
    usage = meter.end(reported, tuple(calls), counted)
    # The model's own reason wins (content_filter...); a cut is "length" whoever counted it.
    finish = "length" if meter.capped else "tool_calls" if calls else finish_reason or "stop"
    return CallOutcome(text, tuple(calls), usage, finish, stop_sequence if finish == "stop" else None)
