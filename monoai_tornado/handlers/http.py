"""``POST /model``, ``/model/stream``, ``/agent/{name}`` and ``/agent/{name}/stream``.

The answer is the whole JSON result, or server-sent events when the request asks for
``text/event-stream`` on a ``/stream`` path. If the client goes away, the run is cancelled.
"""
from __future__ import annotations

import asyncio
import logging
from json.encoder import encode_basestring
from typing import Any

import tornado.ioloop
import tornado.web
from tornado.iostream import StreamClosedError

from ..calls import RunEvents, SilentEvents
from ..context import ServerContext
from ..conversation import RunResult
from ..lifecycle import cancelled_for_shutdown
from ..futures import until_done
from ..errors import ApiError, ClientGone, PayloadTooLarge, ShuttingDown
from ..rendering import render_error
from ..pipeline import Ticket
from ..targets import Target
from ..routing.note import DEPLOYMENT_HEADER, ROUTE_NOTE, RouteNote
from ..prompt_request import PromptRequest, parse_prompt_body
from ..tornado_internals import http_stream, is_finished, set_safe_header
from .base import JsonHandler, dumps

log = logging.getLogger("monoai_tornado.http")

#: nginx's status for a request whose client went away before the answer (never sent).
CLIENT_CLOSED_REQUEST = 499


def _chunk_event(text: str) -> str:
    return 'event: chunk\ndata: {"content":' + encode_basestring(text) + "}\n\n"


class _SseEvents:
    """Run events written as server-sent events as they are produced (see ``send_soon``)."""

    def __init__(self, handler: "PromptHandler") -> None:
        self.handler = handler

    async def on_text(self, text: str) -> None:
        await self.handler.send_soon(_chunk_event(text))

    async def on_texts(self, texts: tuple[str, ...]) -> None:
        """Pieces that came together: one write, each piece still an event of its own."""
        await self.handler.send_soon("".join([_chunk_event(text) for text in texts if text]))

    async def on_step(self, step: dict[str, Any]) -> None:
        await self.handler.send_event("step", {"step": step})


@tornado.web.stream_request_body
class PromptHandler(JsonHandler):
    """Runs one prompt on the model or an agent over plain HTTP (JSON or SSE)."""

    def endpoint_label(self) -> str:
        # From the path, not ``path_kwargs``: Tornado sets those only once it has routed the
        # request into a method, and a 405 or an undecodable agent name is refused before.
        kind = "agent" if "/agent/" in self.request.path else "model"
        return f"{kind}_stream" if self.streaming else kind

    def initialize(self, context: ServerContext, streaming: bool = False) -> None:
        super().initialize(context)
        self.streaming = streaming
        self._body: list[bytes] = []
        self._body_size = 0
        self._body_too_large = False
        self._run: asyncio.Future[RunResult] | None = None
        self._client_gone = False
        self._flush_due = False
        self._flushing: asyncio.Future[None] | None = None

    def prepare(self) -> None:
        # A body over the limit is read and dropped (data_received), then refused with 413: refused
        # before it is read, the client still sending would see a reset, not the answer. Bodies
        # over the server's own cap are refused below the handlers.
        self.context.lifecycle.busy.add(self)

    def data_received(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self._body_size > self.context.max_body_size:
            self._body_too_large = True
            self._body.clear()
        elif not self._body_too_large:
            self._body.append(chunk)

    def wants_sse(self) -> bool:
        return self.streaming and "text/event-stream" in self.request.headers.get("Accept", "")

    async def post(self, agent_name: str | None = None) -> None:
        await self.caller_key()  # 401 before the model is looked at: no key, no 404 either
        target = self.context.target(agent_name)
        request = parse_prompt_body(self.received_body())
        if agent_name is None:
            target = self.context.model_target(request.model)
        await self.answer(request, target, sse=self.wants_sse())

    def received_body(self) -> bytes:
        """The request body; 413 when it was over the limit (read and dropped, see ``prepare``)."""
        if self._body_too_large:
            raise PayloadTooLarge(f"Request body is larger than {self.context.max_body_size} bytes")
        return b"".join(self._body)

    async def answer(self, request: PromptRequest, target: Target, *, sse: bool,
                     events: RunEvents | None = None) -> None:
        """Admit ``request`` and answer it from ``target``: a JSON result, or server-sent events.

        However it ends, the admitted run's place and reservation are given back: a run whose
        task was cancelled before it started (the client left at once) never reaches the
        pipeline's own ``finally``.
        """
        ticket = await self.context.pipeline.admit(request, self.peer_ip, self.request.headers, target,
                                                   trace=self.trace, api_key=self.checked_key)
        ticket.route = self.request.path
        self.ticket = ticket
        note = None
        if self.context.gateway is not None:  # the run names its deployment before its first byte
            note = RouteNote(on_chosen=self._deployment_chosen, on_answer=self.model_answering)
            ROUTE_NOTE.set(note)
        try:
            self.set_limit_headers(ticket)
            if sse:
                await self._answer_with_events(ticket, target, events)
            else:
                result = await self._run_until_done(ticket, target, SilentEvents())
                if result is not None:
                    self.send_json(self.shaped(result))
        finally:
            self.context.pipeline.finish(ticket)
            if note is not None:  # the run's context holds the note: no cycle back to this handler
                note.on_chosen = note.on_answer = None

    def model_answering(self, model: str) -> None:
        """Hook: the model that answers (a fallback's name when a fallback does), before its first event."""

    def _deployment_chosen(self, header_value: str) -> None:
        if not self._headers_written:  # (a header-safe value: Deployment.header_value)
            set_safe_header(self, DEPLOYMENT_HEADER, header_value)

    def shaped(self, result: RunResult) -> dict[str, Any]:
        """Hook: the JSON body of a finished run (``/v1`` answers a ``chat.completion``)."""
        return result.to_result_dict()

    def _start_run(self, ticket: Ticket, target: Target, events: RunEvents) -> "asyncio.Future[RunResult]":
        """Start the prompt as its own task, so that a closed connection can cancel it."""
        self._run = asyncio.ensure_future(self.context.pipeline.run(ticket, target, events))
        return self._run

    async def _run_until_done(self, ticket: Ticket, target: Target, events: RunEvents) -> RunResult | None:
        return await self._outcome(self._start_run(ticket, target, events))

    async def _outcome(self, run: "asyncio.Future[RunResult]") -> RunResult | None:
        """The run's result; None when the client left; ``shutting_down`` when the server stopped it."""
        try:
            return await run
        except (asyncio.CancelledError, StreamClosedError, ClientGone) as exc:
            if self._client_gone:
                self.set_status(CLIENT_CLOSED_REQUEST, "Client Closed Request")  # for logs and metrics
                return None
            if cancelled_for_shutdown(exc):
                raise ShuttingDown("Server is shutting down; the run was stopped") from None
            raise

    async def _answer_with_events(self, ticket: Ticket, target: Target, events: RunEvents | None = None) -> None:
        """Stream the run as server-sent events; a run that fails before its first event answers its status.

        The headers (rate-limit ones included) are held until the run's first event or
        ``sse_header_hold`` seconds, whichever comes first: a failure before then (an upstream
        refusing the request, a connection refused) is a plain JSON error with its own status,
        as a refusal at admission is; a slow first token still gets its headers early. After
        that, a failure is told by an ``error`` event under the 200. ``events`` (``/v1``'s own
        chunks) default to ours.
        """
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        stream = http_stream(self)
        if stream is not None:
            stream.set_nodelay(True)
        keepalive = tornado.ioloop.PeriodicCallback(
            self._keepalive, self.context.sse_keepalive_interval * 1000
        )
        run = self._start_run(ticket, target, events or _SseEvents(self))
        try:
            await until_done(run, self.context.sse_header_hold)
            ended_badly = run.done() and (run.cancelled() or run.exception() is not None)
            if not self._headers_written and not ended_badly:  # else its error, below, has its own status
                await self.stream_started()
            if not run.done():
                keepalive.start()
            result = await self._outcome(run)
            if result is not None:
                await self.stream_result(result)
        except (StreamClosedError, ClientGone):
            return
        except Exception as exc:
            if not self._headers_written:  # failed before the first event: its own status, as JSON
                raise
            if not isinstance(exc, ApiError):
                log.exception("SSE run failed")
            await self._send_error_quietly(render_error(exc, shape=self.error_shape).body)
        finally:
            keepalive.stop()
            if not run.done():
                run.cancel()
        if not self._client_gone:
            self.finish()

    async def stream_started(self) -> None:
        """Hook: the run has sent no event within the hold: the headers go out now, with what a
        stream begins with (``/v1``'s role chunk); a run's first event sends them otherwise."""
        await self.flush()

    async def stream_result(self, result: RunResult) -> None:
        """Hook: the run's result, as the stream's last events."""
        await self.send_event("complete", {"result": result.to_result_dict()})

    def error_event(self, body: dict[str, Any]) -> str:
        """Hook: the event that tells the client its run failed after the stream began."""
        return f"event: error\ndata: {dumps(body)}\n\n"

    async def send_event(self, event: str, data: dict[str, Any]) -> None:
        await self.send_sse(f"event: {event}\ndata: {dumps(data)}\n\n")

    async def send_sse(self, text: str) -> None:
        """Write and flush ``text`` (whole events); ClientGone once the client left."""
        if self._client_gone:
            raise ClientGone()
        self.write(text)
        try:
            await self.flush()
        except StreamClosedError:
            raise ClientGone() from None

    async def send_soon(self, text: str) -> None:
        """Write ``text`` (whole events); it is flushed once the run yields the loop.

        So the events produced in one go (the pieces of one upstream read) leave in one write,
        each still an event of its own. The next one waits for that flush only when the
        kernel did not take it at once: a slow reader slows its own run, as with ``flush()``.
        """
        if self._client_gone:
            raise ClientGone()
        flushing = self._flushing
        if flushing is not None and not flushing.done():
            try:
                await flushing
            except StreamClosedError:
                raise ClientGone() from None
        self.write(text)
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_due = False
        run = self._run
        if run is not None and run.done() and not run.cancelled() and run.exception() is None:
            # The run is over, answered (an answer that came in one read): its last events and the
            # end of the answer follow at once (``_answer_with_events``) and leave with these, in
            # one write. A failed run's text is flushed: its error then follows as an event.
            return
        if not self._client_gone and not is_finished(self):
            self._flushing = flushing = self.flush()
            flushing.add_done_callback(_seen)

    async def _send_error_quietly(self, body: dict[str, Any]) -> None:
        try:
            await self.send_sse(self.error_event(body))
        except (StreamClosedError, ClientGone):
            pass

    def _keepalive(self) -> None:
        if not self._client_gone and not is_finished(self):
            self.write(": keep-alive\n\n")
            # A client gone meanwhile is noticed by on_connection_close; drop the error here.
            self.flush().add_done_callback(_seen)

    def on_finish(self) -> None:
        self.context.lifecycle.busy.discard(self)
        # A front's event writer (``self.events``) points back to this handler: without it the
        # request is freed by refcounting at once, not left to the cyclic garbage collector.
        self.__dict__.pop("events", None)
        super().on_finish()

    def on_connection_close(self) -> None:
        super().on_connection_close()  # fails the pending body future of a half-sent request
        self.context.lifecycle.busy.discard(self)
        self._client_gone = True
        if self._run is not None and not self._run.done():
            self._run.cancel()


def _seen(future: "asyncio.Future[None]") -> None:
    """Marks a flush's error as seen: a client gone is noticed by on_connection_close."""
    if not future.cancelled():
        future.exception()
