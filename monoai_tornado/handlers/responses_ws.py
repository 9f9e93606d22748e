"""``WS /v1/responses``: the Responses API's WebSocket mode (what ``client.responses.connect()`` speaks).

Each client message is ``{"type": "response.create", ...the POST body...}``; the answer is the
events of a streamed response, one JSON text message each, numbered from 0 per response. One
response runs at a time per connection: a ``response.create`` meanwhile gets an ``error``
(``response_in_progress``) and the running one goes on. The connection keeps its last
response, stored or not (``store: false``), so the next turn sends only its new items with
``previous_response_id``. Closing the connection cancels the running response. The handshake
takes the API key as every WebSocket does; admission, budgets and per-user limits are the
pipeline's, as on ``/model/ws``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..context import ServerContext
from ..dialects.responses import ResponsesRequest, parse_responses_object
from ..dialects.responses_events import Event, ResponseEvents, error_event
from ..dialects.responses_store import StoredResponse
from ..errors import ApiError, ClientGone, InvalidJson, ShuttingDown
from ..lifecycle import cancelled_for_shutdown
from ..pipeline import Ticket
from ..prompt_request import load_json_object
from ..rendering import render_error
from ..request_trace import RequestTrace
from ..tornado_internals import frame_writer
from .responses import begin_turn, keep, owner_of
from .websocket import PromptSocket

log = logging.getLogger("monoai_tornado.responses")


class _SocketEvents:
    """A run's text as ``response.output_text.delta`` messages, each sent as it is made."""

    def __init__(self, socket: ResponsesSocket, events: ResponseEvents, live: bool) -> None:
        self.socket = socket
        self.events = events
        self.live = live

    async def on_text(self, text: str) -> None:
        if self.live:
            await self.socket.send_events(self.events.text(text))

    async def on_step(self, step: dict[str, Any]) -> None:
        pass


class ResponsesSocket(PromptSocket):
    """One WebSocket-mode connection: its responses one at a time, its last one kept."""

    error_shape = "openai"  # a refused handshake is an error on /v1/*

    def initialize(self, context: ServerContext) -> None:
        super().initialize(context)
        #: The connection's last response (kept even with ``store: false``).
        self.last: StoredResponse | None = None
        #: The events of the response running now (their numbers go on across errors).
        self.running: ResponseEvents | None = None

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)
        self._write_frame = frame_writer(self)
        self.context.lifecycle.sockets.add(self)

    def _endpoint(self) -> str:
        return "v1_responses_ws"

    async def send_events(self, events: list[Event]) -> None:
        for event in events:
            await self.send(event)

    def _error(self, exc: ApiError) -> None:
        """An error of a message, told at once (numbered in the running response's sequence)."""
        answer = render_error(exc, shape="openai")
        sequence = 0
        if self.running is not None:
            sequence = self.running.sequence
            self.running.sequence += 1
        try:
            self.send_nowait(error_event(answer.body, sequence_number=sequence, status=answer.status))
        except ClientGone:
            pass

    def _refuse(self, error: str, code: str, close_code: int) -> None:
        """A message the connection cannot take (binary, too big): an ``error`` event, then close."""
        try:
            self.send_nowait(error_event(render_error(ApiError(error, status=400, code=code), shape="openai").body,
                                         status=400))
        except ClientGone:
            return
        self.close(close_code, error[:120])

    def on_message(self, message: str | bytes) -> None:
        if self.closed:
            return
        text = self._text_or_refuse(message)
        if text is None:
            return
        try:
            body = load_json_object(text)
            if body.get("type") != "response.create":
                raise InvalidJson('Send {"type": "response.create", ...the body of POST /v1/responses...}')
            if self.current is not None:
                raise ApiError("A response is in progress on this connection: wait for its response.completed "
                               "(or open another connection)", status=400, code="response_in_progress")
            parsed = parse_responses_object(body)
        except ApiError as exc:
            self._error(exc)
            return
        self.current = asyncio.ensure_future(self._respond(parsed))
        self.context.lifecycle.busy.add(self)

    async def _respond(self, parsed: ResponsesRequest) -> None:
        """Make one response; its last events go out once the connection is free again, so the
        client's next ``response.create`` (sent on ``response.completed``) is never refused."""
        pipeline = self.context.pipeline
        ticket: Ticket | None = None
        events: ResponseEvents | None = None
        last: list[Event] = []
        outcome = "complete"
        started = time.monotonic()
        headers, peer = self.request.headers, self.request.remote_ip or "unknown"
        self.trace = trace = RequestTrace.from_headers(headers)  # a new id for every response
        try:
            owner = await owner_of(self.context, parsed.user_id, peer, headers)
            turn = await begin_turn(self, self.context, parsed, owner, self.last)
            ticket = await pipeline.admit(turn.parsed.prompt_request(turn.items), peer, headers, turn.target,
                                          trace=trace)
            ticket.route = self.request.path
            self.running = events = ResponseEvents(turn.builder)
            await self.send_events(events.opening())
            try:
                result = await pipeline.run(ticket, turn.target, _SocketEvents(self, events, turn.live_text))
            except ApiError as exc:
                outcome = exc.code
                last = events.failed(render_error(exc, shape="openai").body)
            else:
                last, response = events.closing(result)
                self.last = await keep(self.context, turn, response)
        except ClientGone:
            outcome = "client_gone"
        except asyncio.CancelledError as exc:
            outcome = "cancelled"
            if self.closed or not cancelled_for_shutdown(exc):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the server stopped the run: the client is told so, below
            body = render_error(ShuttingDown("Server is shutting down; the run was stopped"), shape="openai").body
            outcome = "shutting_down"
            last = events.failed(body) if events is not None and not events.finished else \
                [error_event(body, status=503)]
        except Exception as exc:
            if not isinstance(exc, ApiError):
                log.exception("WebSocket response failed")
            answer = render_error(exc, shape="openai")
            outcome = answer.body["error"]["code"]
            last = events.failed(answer.body) if events is not None and not events.finished else \
                [error_event(answer.body, status=answer.status)]
        finally:
            if ticket is not None:
                pipeline.finish(ticket)  # a run that never started gives its place back
            self._account(ticket, outcome, started)
            self._release()
        if last and not self.closed:
            await self._send_quietly(last)

    def _release(self) -> None:
        """The connection takes the next ``response.create`` from now on."""
        self.running = None
        if self.current is asyncio.current_task():
            self.current = None
            self.context.lifecycle.busy.discard(self)

    async def _send_quietly(self, events: list[Event]) -> None:
        try:
            await self.send_events(events)
        except ClientGone:
            pass
