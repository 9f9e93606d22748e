"""``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``: the OpenAI Responses front.

A transport over the same pipeline as every other front (identity, admission, rate-limit
headers, budgets with ``max_output_tokens`` as the cap, cancel on disconnect, drain); the
dialect is :mod:`monoai_tornado.dialects.responses`, the events
:mod:`monoai_tornado.dialects.responses_events`, the state
:mod:`monoai_tornado.dialects.responses_store`. The WebSocket mode is
:mod:`monoai_tornado.handlers.responses_ws`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import tornado.web

from ..calls import RunEvents
from ..context import ServerContext
from ..conversation import RunResult
from ..dialects.responses import ResponseBuilder, ResponsesRequest, parse_responses_body, stored_items
from ..dialects.responses_events import Event, ResponseEvents
from ..dialects.responses_store import StoredResponse
from ..errors import ApiError, BadRequest, NotFound
from ..identity import UNCHECKED, Unchecked
from ..keys import ApiKey
from ..pipeline import Ticket
from ..targets import ModelTarget, Target
from .base import dumps
from .http import PromptHandler
from .openai_front import OpenAIShapedErrors, names_answering, target_for

log = logging.getLogger("monoai_tornado.responses")


@dataclass
class Turn:
    """One response to make: who asks, the conversation's items with this input, what runs it."""

    parsed: ResponsesRequest
    owner: str
    items: tuple[dict[str, Any], ...]
    target: Target
    builder: ResponseBuilder

    @property
    def live_text(self) -> bool:
        """Whether text streams as the model makes it (an agent's shows once, as its answer)."""
        return isinstance(self.target, ModelTarget)

    def record(self, response: dict[str, Any]) -> StoredResponse:
        """The stored form of this turn once answered: the response and the items so far."""
        items = (*self.items, *stored_items(response["output"]))
        return StoredResponse(self.builder.id, self.owner, self.builder.created_at, response, items)


async def owner_of(context: ServerContext, user_id: str | None, peer: str, headers: Mapping[str, str],
                   api_key: ApiKey | None | Unchecked = UNCHECKED) -> str:
    """The identity stored responses belong to: the key's user, else the validated user, else the IP
    (``api_key``: the key ``headers`` carry, when the caller checked it already)."""
    identity = await context.pipeline.identity.resolve(user_id, peer, headers, api_key)
    return identity.key


async def begin_turn(handler: tornado.web.RequestHandler, context: ServerContext, parsed: ResponsesRequest,
                     owner: str, last: StoredResponse | None = None) -> Turn:
    """The turn ``parsed`` asks for, continuing ``previous_response_id`` (``last`` first: a
    WebSocket's own last response, stored or not)."""
    target = target_for(handler, parsed.as_chat())  # type: ignore[arg-type]
    history: Sequence[dict[str, Any]] = ()
    previous_id = parsed.previous_response_id
    if previous_id is not None:
        previous = last if last is not None and last.id == previous_id else \
            await context.responses.get(owner, previous_id)
        if previous is None:
            raise BadRequest(f"Previous response with id '{previous_id[:80]}' not found",
                             code="previous_response_not_found")
        history = previous.items
    items = parsed.items_after(history)
    builder = ResponseBuilder(parsed)
    if names_answering(context, target):  # an alias: the model it maps to
        builder.model, builder.names_answering = target.name, True
    return Turn(parsed, owner, items, target, builder)


async def keep(context: ServerContext, turn: Turn, response: dict[str, Any]) -> StoredResponse:
    """Store the answered turn when it asks to be stored; a store that fails is logged, the
    answer still goes out (its tokens are spent)."""
    record = turn.record(response)
    if turn.parsed.store:
        try:
            await context.responses.put(record)
        except ApiError as exc:
            log.warning("response %s not stored: %s", record.id, exc.message)
    return record


def sse(events: list[Event]) -> str:
    """Events as server-sent events: ``event: TYPE`` then ``data: {...}``."""
    return "".join(f"event: {event['type']}\ndata: {dumps(event)}\n\n" for event in events)


class _SseEvents:
    """A run's text as ``response.output_text.delta`` events (opening the response first)."""

    def __init__(self, handler: ResponsesHandler, live: bool) -> None:
        self.handler = handler
        self.live = live

    async def on_text(self, text: str) -> None:
        if self.live:
            await self.handler.send_soon(sse(self.handler.events.text(text)))

    async def on_texts(self, texts: tuple[str, ...]) -> None:
        """Pieces that came together: one write, each piece still a delta of its own."""
        if self.live:
            events = self.handler.events
            await self.handler.send_soon("".join([sse(events.text(text)) for text in texts if text]))

    async def on_step(self, step: dict[str, Any]) -> None:
        pass


@tornado.web.stream_request_body
class ResponsesHandler(OpenAIShapedErrors, PromptHandler):
    """``POST /v1/responses``: a ``response`` object, or with ``stream`` its events."""

    turn: Turn
    events: ResponseEvents
    answered: dict[str, Any]

    def endpoint_label(self) -> str:
        return "v1_responses_stream" if self.streaming else "v1_responses"

    async def post(self, agent_name: str | None = None) -> None:
        parsed = parse_responses_body(self.received_body())
        owner = await owner_of(self.context, parsed.user_id, self.peer_ip, self.request.headers,
                               await self.caller_key())
        self.turn = turn = await begin_turn(self, self.context, parsed, owner)
        self.streaming = parsed.stream
        self.events = ResponseEvents(turn.builder)
        events: RunEvents | None = _SseEvents(self, turn.live_text) if parsed.stream else None
        await self.answer(turn.parsed.prompt_request(turn.items), turn.target, sse=parsed.stream, events=events)

    async def _run_until_done(self, ticket: Ticket, target: Target, events: RunEvents) -> RunResult | None:
        result = await super()._run_until_done(ticket, target, events)
        if result is not None:  # stored before it is answered: the next turn may come at once
            self.answered = self.turn.builder.finished(result)
            await keep(self.context, self.turn, self.answered)
        return result

    def shaped(self, result: RunResult) -> dict[str, Any]:
        return self.answered

    def model_answering(self, model: str) -> None:
        if self.streaming and not self.events.opened and self.turn.builder.names_answering:
            self.turn.builder.model = model  # response.created not sent yet: it names who answers

    async def stream_started(self) -> None:
        await self.send_sse(sse(self.events.opening()))

    async def stream_result(self, result: RunResult) -> None:
        closing, response = self.events.closing(result)
        await keep(self.context, self.turn, response)
        await self.send_sse(sse(closing))

    def error_event(self, body: dict[str, Any]) -> str:
        return sse(self.events.failed(body))


class ResponseHandler(OpenAIShapedErrors):
    """``GET`` and ``DELETE /v1/responses/{id}``: the asker's own stored responses only.

    The asker is the API key's user, else the ``user`` query parameter (through the user
    validator, as a body's ``user``), else the client address.
    """

    endpoint = "v1_response"

    async def _owner(self) -> str:
        user = self.get_query_argument("user", None)
        return await owner_of(self.context, user or None, self.peer_ip, self.request.headers,
                              await self.caller_key())

    async def _find(self, response_id: str) -> StoredResponse:
        record = await self.context.responses.get(await self._owner(), response_id)
        if record is None:
            raise NotFound(f"No response with id '{response_id[:80]}' (unknown, expired, deleted or not yours)")
        return record

    async def get(self, response_id: str) -> None:
        self.send_json((await self._find(response_id)).response)

    async def delete(self, response_id: str) -> None:
        if not await self.context.responses.delete(await self._owner(), response_id):
            raise NotFound(f"No response with id '{response_id[:80]}' (unknown, expired, deleted or not yours)")
        self.send_json({"id": response_id, "object": "response", "deleted": True})
