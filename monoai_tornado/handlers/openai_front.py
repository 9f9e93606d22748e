"""``GET /v1/models`` and ``POST /v1/chat/completions``: the OpenAI-compatible front (API.md Part 2).

Another transport over the same pipeline as the JSON, SSE and WebSocket handlers: the same
identity (the body's ``user`` is a ``user_id``), admission, rate-limit headers before the first
byte, usage, settlement, metrics, access log, cancel on disconnect and drain on shutdown. Only
the wire format is its own: ``chat.completion`` objects, ``chat.completion.chunk`` events ended
by ``data: [DONE]``, and errors in OpenAI's shape.
"""
from __future__ import annotations

import time
from json.encoder import encode_basestring
from typing import Any

import tornado.web

from ..chat_request import ChatRequest, parse_chat_body
from ..errors import BadRequest, NotFound
from ..ids import SerialIds
from ..calls import RunEvents
from ..context import ServerContext
from ..conversation import RunResult
from ..targets import AgentTarget, ModelTarget, Target
from .base import JsonHandler, dumps
from .http import PromptHandler

#: ``chatcmpl-`` ids: unique, not secret (they open nothing).
completion_id = SerialIds("chatcmpl-")

#: Prefix of the ids that name agents as models.
AGENT_PREFIX = "agent/"


class OpenAIShapedErrors(JsonHandler):
    """Errors of every ``/v1`` answer in OpenAI's shape."""

    error_shape = "openai"


class ModelsHandler(OpenAIShapedErrors):
    """``GET /v1/models``: the served model, by its backend's name, and every agent as ``agent/NAME``."""

    endpoint = "v1_models"

    async def get(self) -> None:
        key = await self.caller_key()
        created = int(self.context.started_at.timestamp())
        data = []
        gateway = self.context.gateway
        if gateway is not None:
            data += [{"id": name, "object": "model", "created": created,
                      "owned_by": route.deployments[0].backend.provider}
                     for name, route in gateway.router.models.items()]
        elif self.context.model is not None:
            owner = self.context.model.backend.provider
            data.append({"id": self.context.model.name, "object": "model", "created": created, "owned_by": owner})
        data += [{"id": AGENT_PREFIX + name, "object": "model", "created": created, "owned_by": self.context.name}
                 for name in sorted(self.context.agents)]
        if key is not None:  # a key naming its models sees only those
            data = [entry for entry in data if key.allows(str(entry["id"]))]
        self.send_json({"object": "list", "data": data})


def target_for(handler: JsonHandler, chat: ChatRequest) -> Target:
    """The model or agent ``chat.model`` names; 404 ``model_not_found``, or 400 for tools it cannot take."""
    context = handler.context
    target: Target | None = None
    if chat.model.startswith(AGENT_PREFIX):
        target = context.agent_target(chat.model[len(AGENT_PREFIX):])
    elif context.gateway is not None:
        target = context.gateway.target(chat.model)
    elif context.model is not None and chat.model == context.model.name:
        target = context.model
    if target is None:
        raise NotFound(f"The model '{chat.model}' does not exist; GET /v1/models lists the models served",
                       code="model_not_found")
    if chat.request.tools:
        if not isinstance(target, ModelTarget):
            raise BadRequest(f"'{chat.model}' is an agent: it runs its own tools and takes none from the client",
                             code="tools_not_supported")
        if not target.backend.supports_tools:
            raise BadRequest(f"The model '{chat.model}' cannot take tools (its backend does not support them)",
                             code="tools_not_supported")
    return target


def names_answering(context: ServerContext, target: Target) -> bool:
    """Whether an answer names the model that answers rather than the one asked for: under a
    gateway, a model's run does (an alias is answered as the model it maps to, a fallback by its
    own name); an agent is always named as asked (``agent/NAME``)."""
    return context.gateway is not None and not isinstance(target, AgentTarget)


def shown_model(handler: JsonHandler, requested: str, target: Target, result: RunResult | None = None) -> str:
    """The model an answer names: the one answering (``result``'s, else the target's) where
    :func:`names_answering`, else the one requested."""
    if not names_answering(handler.context, target):
        return requested
    return result.model.name if result is not None and result.model is not None else target.name


class _Chunks:
    """The ``chat.completion.chunk`` events of one answer, each a ``data:`` line."""

    def __init__(self, model: str) -> None:
        self.id = completion_id()
        self.name(model)

    def name(self, model: str) -> None:
        """The model every chunk names from now on."""
        self.head = (f'data: {{"id":"{self.id}","object":"chat.completion.chunk",'
                     f'"created":{int(time.time())},"model":{encode_basestring(model)},"choices":')

    def choice(self, delta: str, finish_reason: str | None = None) -> str:
        """An event with one choice; ``delta`` is JSON text."""
        finish = "null" if finish_reason is None else encode_basestring(finish_reason)
        return f'{self.head}[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}\n\n'

    def content(self, text: str) -> str:
        return self.head + '[{"index":0,"delta":{"content":' + encode_basestring(text) + '},"finish_reason":null}]}\n\n'

    def usage(self, usage: dict[str, Any]) -> str:
        return f'{self.head}[],"usage":{dumps(usage)}}}\n\n'


class _ChunkEvents:
    """A model's text, sent as content deltas as the model makes it, after the role chunk."""

    def __init__(self, handler: ChatCompletionsHandler, chunks: _Chunks) -> None:
        self.handler = handler
        self.chunks = chunks
        self.sent_text = False
        self.sent_role = False

    def opening(self) -> str:
        """The role chunk every stream begins with, the first time; then nothing."""
        if self.sent_role:
            return ""
        self.sent_role = True
        return self.chunks.choice('{"role":"assistant","content":""}')

    async def on_text(self, text: str) -> None:
        await self.send_text(text)

    async def on_texts(self, texts: tuple[str, ...]) -> None:
        """Pieces that came together: one write, each piece still a chunk of its own."""
        self.sent_text = True
        content = self.chunks.content
        await self.handler.send_soon(self.opening() + "".join([content(text) for text in texts if text]))

    async def send_text(self, text: str) -> None:
        self.sent_text = True
        await self.handler.send_soon(self.opening() + self.chunks.content(text))

    async def on_step(self, step: dict[str, Any]) -> None:
        pass


class _FinalTurnEvents(_ChunkEvents):
    """An agent's text: a turn's text goes out once the turn proves to be the answer (asks no tool).

    So the streamed content is the agent's final text, as the whole answer's ``content`` is.
    """

    def __init__(self, handler: ChatCompletionsHandler, chunks: _Chunks) -> None:
        super().__init__(handler, chunks)
        self.turn: list[str] = []

    async def on_text(self, text: str) -> None:
        self.turn.append(text)

    async def on_texts(self, texts: tuple[str, ...]) -> None:
        self.turn.extend(text for text in texts if text)

    async def on_step(self, step: dict[str, Any]) -> None:
        if step.get("type") != "model":
            return
        turn, self.turn = self.turn, []
        if not step.get("tool_calls"):
            for text in turn:
                await self.send_text(text)


def _usage(result: RunResult) -> dict[str, Any]:
    usage = result.usage
    shaped: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                              "total_tokens": usage.total_tokens}
    if usage.cost_nanos is not None:  # a priced model (API.md Part 3, "Money")
        shaped["cost_usd"] = usage.cost_usd
    return shaped


def completion(result: RunResult, model: str) -> dict[str, Any]:
    """A run's result as a ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if result.tool_calls:
        message["content"] = result.text or None
        message["tool_calls"] = [call.to_openai() for call in result.tool_calls]
    return {"id": completion_id(), "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason}],
            "usage": _usage(result)}


@tornado.web.stream_request_body
class ChatCompletionsHandler(OpenAIShapedErrors, PromptHandler):
    """``POST /v1/chat/completions``: a ``chat.completion``, or with ``stream`` its chunks."""

    chat: ChatRequest
    target: Target
    chunks: _Chunks
    events: _ChunkEvents

    def endpoint_label(self) -> str:
        return "v1_chat_stream" if self.streaming else "v1_chat"

    async def post(self, agent_name: str | None = None) -> None:
        await self.caller_key()  # 401 before the model is looked at: no key, no 404 either
        self.chat = chat = parse_chat_body(self.received_body())
        self.target = target = target_for(self, chat)
        self.streaming = chat.stream
        if chat.stream:
            self.chunks = _Chunks(shown_model(self, chat.model, target))
            self.events = (_FinalTurnEvents if isinstance(target, AgentTarget) else _ChunkEvents)(self, self.chunks)
        events: RunEvents | None = self.events if chat.stream else None
        await self.answer(chat.request, target, sse=chat.stream, events=events)

    def shaped(self, result: RunResult) -> dict[str, Any]:
        return completion(result, shown_model(self, self.chat.model, self.target, result))

    def model_answering(self, model: str) -> None:
        if self.chat.stream and not self.events.sent_role:  # no chunk went out yet: they name who answers
            self.chunks.name(model)

    async def stream_started(self) -> None:
        await self.send_sse(self.events.opening())

    async def stream_result(self, result: RunResult) -> None:
        chunks = self.chunks
        if not self.events.sent_text and result.text:
            await self.events.send_text(result.text)  # an agent that made no final turn
        if result.tool_calls:
            deltas = [{"index": index, **call.to_openai()} for index, call in enumerate(result.tool_calls)]
            await self.send_sse(chunks.choice(dumps({"tool_calls": deltas})))
        tail = chunks.choice("{}", result.finish_reason)
        if self.chat.include_usage:
            tail += chunks.usage(_usage(result))
        await self.send_sse(tail + "data: [DONE]\n\n")

    def error_event(self, body: dict[str, Any]) -> str:
        return f"data: {dumps(body)}\n\n"
