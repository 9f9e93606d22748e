"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: the Anthropic Messages front
(API.md Part 3), so that Anthropic clients (the ``anthropic`` SDKs, Claude Code with
``ANTHROPIC_BASE_URL``) reach any model served.

A transport only, on the same pipeline as every prompt route (identity, admission, budgets,
cancel on disconnect, drain, metrics, access log); the translation is the codec's
(:mod:`monoai_tornado.dialects.anthropic`), errors are in Anthropic's shape.
"""
from __future__ import annotations

from typing import Any

import tornado.web

from ..chat_request import ChatRequest
from ..conversation import RunResult
from ..dialects.anthropic import MessagesRequest, MessageStream, message_object, parse_messages_body
from ..model_access import allowed_model
from ..targets import AgentTarget, Target
from ..prompt_tokens import upper_bound
from .base import JsonHandler
from .http import PromptHandler
from .openai_front import shown_model, target_for


class AnthropicShapedErrors(JsonHandler):
    """Errors of every Anthropic route in Anthropic's shape."""

    error_shape = "anthropic"


def _target(handler: JsonHandler, parsed: MessagesRequest) -> Target:
    """The model (or ``agent/NAME``) the request names: 404, or 400 for tools it cannot take."""
    return target_for(handler, ChatRequest(parsed.model, parsed.request))


class _BlockEvents:
    """The run's text as ``text_delta`` events, after ``message_start``; an agent's text only
    once its turn proves to be the answer (asks for no tool), as the whole answer's is."""

    def __init__(self, handler: MessagesHandler, final_turn_only: bool) -> None:
        self.handler = handler
        self.final_turn_only = final_turn_only
        self.started = False
        self.sent_text = False
        self.turn: list[str] = []

    def opening(self) -> str:
        """``message_start`` and a ``ping`` the first time; then nothing."""
        if self.started:
            return ""
        self.started = True
        return self.handler.stream.start(self.handler.input_tokens())

    def text(self, text: str) -> str:
        self.sent_text = True
        return self.opening() + self.handler.stream.text(text)

    async def on_text(self, text: str) -> None:
        if self.final_turn_only:
            self.turn.append(text)
        else:
            await self.handler.send_soon(self.text(text))

    async def on_texts(self, texts: tuple[str, ...]) -> None:
        """Pieces that came together: one write, each piece still a delta of its own."""
        if self.final_turn_only:
            self.turn.extend(text for text in texts if text)
        else:
            await self.handler.send_soon("".join([self.text(text) for text in texts if text]))

    async def on_step(self, step: dict[str, Any]) -> None:
        if not self.final_turn_only or step.get("type") != "model":
            return
        turn, self.turn = self.turn, []
        if not step.get("tool_calls") and turn:
            await self.handler.send_soon(self.text("".join(turn)))


@tornado.web.stream_request_body
class MessagesHandler(AnthropicShapedErrors, PromptHandler):
    """``POST /v1/messages``: a ``message`` object, or with ``stream`` its events."""

    parsed: MessagesRequest
    target: Target
    stream: MessageStream
    events: _BlockEvents

    def endpoint_label(self) -> str:
        return "v1_messages_stream" if self.streaming else "v1_messages"

    async def post(self, agent_name: str | None = None) -> None:
        await self.caller_key()  # 401 before the model is looked at: no key, no 404 either
        self.parsed = parsed = parse_messages_body(self.received_body())
        self.target = target = _target(self, parsed)
        self.streaming = parsed.stream
        if parsed.stream:
            self.stream = MessageStream(shown_model(self, parsed.model, target))
            self.events = _BlockEvents(self, isinstance(target, AgentTarget))
        await self.answer(parsed.request, target, sse=parsed.stream, events=self.events if parsed.stream else None)

    def input_tokens(self) -> int:
        """The prompt's tokens for ``message_start``: admission's count, else counted now when that
        is cheap; a big prompt uncounted says 0 there (``message_delta`` carries the run's count),
        as counting it would stall the event loop."""
        counted = self.ticket.prompt_tokens if self.ticket is not None else None
        if counted is not None:
            return counted
        messages = self.parsed.request.upstream_messages()
        small = self.context.pipeline.prompt_counter.is_small(upper_bound(messages))
        return self.context.pipeline.counter.count_messages(messages) if small else 0

    def shaped(self, result: RunResult) -> dict[str, Any]:
        return message_object(result, shown_model(self, self.parsed.model, self.target, result))

    def model_answering(self, model: str) -> None:
        if self.parsed.stream and not self.events.started:  # message_start not sent yet: it names who answers
            self.stream.model = model

    async def stream_started(self) -> None:
        await self.send_sse(self.events.opening())

    async def stream_result(self, result: RunResult) -> None:
        events = self.events
        text = events.text(result.text) if not events.sent_text and result.text else events.opening()
        await self.send_sse(text + self.stream.finish(result))


@tornado.web.stream_request_body
class CountTokensHandler(AnthropicShapedErrors, PromptHandler):
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, the count admission reserves
    for the prompt (its messages as the upstream gets them, in their chat template)."""

    def endpoint_label(self) -> str:
        return "v1_messages_count_tokens"

    async def post(self, agent_name: str | None = None) -> None:
        key = await self.caller_key()  # 401 before the model is looked at: no key, no 404 either
        parsed = parse_messages_body(self.received_body(), counting=True)
        target = _target(self, parsed)
        if key is not None:
            allowed_model(key, target)  # a key's models hold here too
        pipeline = self.context.pipeline
        await pipeline.identity.resolve(parsed.request.user_id, self.peer_ip, self.request.headers, key)
        self.send_json({"input_tokens": await pipeline.prompt_counter.count(parsed.request.upstream_messages())})
