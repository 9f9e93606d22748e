"""``WS /model/ws`` and ``WS /agent/{name}/ws``: prompts in, chunks and results out.

Tornado reads no further frame while ``on_message`` runs, so a prompt runs in its own task,
and prompts that arrive meanwhile wait in a deque that the same task serves in order; that
keeps ``on_message`` free to receive ``{"type": "cancel"}`` while a prompt runs. An idle
connection holds no task at all (memory per idle connection matters at 10,000 of them).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import tornado.websocket
from tornado.iostream import StreamClosedError
from json.encoder import encode_basestring

from ..context import ServerContext
from ..lifecycle import cancelled_for_shutdown
from ..errors import ApiError, ClientGone, Overloaded, ShuttingDown
from ..keys.ring import SUBPROTOCOL
from ..prompt_request import PromptRequest, load_json_object, parse_prompt_object
from ..pipeline import Ticket
from ..targets import Target
from ..rendering import ErrorAnswer, Shape, render_error
from ..tornado_internals import FrameWriter, frame_writer, reason, websocket_backed_up
from ..logs import log_access
from ..request_trace import RequestTrace
from .base import dumps

log = logging.getLogger("monoai_tornado.websocket")

#: Prompts a connection may have waiting behind the running one.
MAX_QUEUED_PROMPTS = 32
#: Bytes of chunk text buffered while the socket is busy before the run waits for it.
HIGH_WATER_BYTES = 64 * 1024

#: RFC 6455 opcode of a text frame.
TEXT_OPCODE = 0x1

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009


class _SocketEvents:
    """Run events sent as WebSocket messages: one chunk message per chunk the model made.

    A chunk is written at once when the socket's buffer is empty, without waiting for the
    write to be acknowledged. Only while the kernel cannot take more (a slow reader, a full
    buffer) do new chunks wait, and then they go out joined as one chunk message once the
    socket drains (chunks are only parts of the answer). Past ``HIGH_WATER_BYTES`` of waiting
    text the run awaits the socket: a slow reader slows only its own stream.
    """

    def __init__(self, socket: "PromptSocket") -> None:
        self.socket = socket
        self.pending: list[str] = []
        self.pending_size = 0
        self.inflight: asyncio.Future[None] | None = None

    async def on_text(self, text: str) -> None:
        if not self.pending and not self.socket.backed_up():
            self.inflight = self.socket.send_text_nowait(_chunk_message(text))
            # Let the other connections have the loop between two chunks, as a model that
            # streams token by token would: under load, every prompt gets its first chunk
            # soon instead of waiting behind whole answers.
            await asyncio.sleep(0)
            return
        self.pending.append(text)
        self.pending_size += len(text)
        if self.inflight is None or self.inflight.done():
            self._write_pending()
        elif self.pending_size >= HIGH_WATER_BYTES:
            await self.flush()

    async def on_step(self, step: dict[str, Any]) -> None:
        await self.flush()
        await self.socket.send({"type": "step", "step": step})

    def _write_pending(self) -> None:
        if not self.pending:
            return
        text = "".join(self.pending)
        self.pending.clear()
        self.pending_size = 0
        self.inflight = self.socket.send_text_nowait(_chunk_message(text))
        self.inflight.add_done_callback(self._after_write)

    def _after_write(self, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        if not self.socket.closed:
            try:
                self._write_pending()
            except ClientGone:
                pass

    async def flush(self) -> None:
        """Wait until every chunk so far has been handed to the socket."""
        while True:
            if self.inflight is not None and not self.inflight.done():
                try:
                    await self.inflight
                except (tornado.websocket.WebSocketClosedError, StreamClosedError):
                    raise ClientGone() from None
            elif self.pending:
                self._write_pending()
            else:
                return


def _chunk_message(text: str) -> str:
    """The same bytes as ``dumps({"type": "chunk", "content": text})``, without building a dict."""
    return '{"type":"chunk","content":' + encode_basestring(text) + "}"


class PromptSocket(tornado.websocket.WebSocketHandler):
    """One client connection; serves its prompts one at a time, in order."""

    context: ServerContext
    #: The id and trace context of the prompt in service (a new one per prompt).
    trace: RequestTrace
    #: The shape of a refused handshake's body (a dialect's socket answers in its own).
    error_shape: Shape = "json"

    def initialize(self, context: ServerContext) -> None:
        self.context = context
        self.target: Target | None = None
        #: Prompts waiting behind the one in service; None for one cancelled before it began.
        self.waiting: collections.deque[PromptRequest | None] | None = None
        self.current: asyncio.Task[None] | None = None
        #: Where the prompt in service is: "idle" (none), "starting" (handed to the worker,
        #: not begun), "running" (a cancel stops it) or "cancelling" (a cancel was asked for).
        self.phase = "idle"
        self.closed = False
        self._write_frame: FrameWriter | None = None

    # -- Tornado hooks -------------------------------------------------------------------

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """The handshake: refused with 401 for a bad API key (or none, when keys are required)."""
        keys = self.context.keys
        if keys is not None:
            try:
                await keys.from_headers(self.request.headers)
            except ApiError as exc:
                self._refuse_handshake(render_error(exc, shape=self.error_shape))
                return
        await super().get(*args, **kwargs)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        """A browser offers ``monoai`` and ``bearer.KEY`` (it cannot set Authorization): select ``monoai``."""
        return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None

    def check_origin(self, origin: str) -> bool:
        return self.context.origin_allowed(origin)

    @property
    def max_message_size(self) -> int:
        # Twice our limit, so that a message just over it still gets an error message first.
        return self.context.max_ws_message_size * 2

    @property
    def ping_interval(self) -> float | None:
        interval = self.settings.get("websocket_ping_interval", 20.0)
        return None if interval is None else float(interval)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors Tornado raises before the upgrade (405, ...): refused as every handshake is."""
        if status_code == 405:
            self.set_header("Allow", "GET")
        self._refuse_handshake(render_error(None, shape=self.error_shape, status=status_code,
                                                reason=reason(self)))

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> "asyncio.Future[None]":
        """Tornado refuses a handshake (400 headers, 403 origin, 426 version) with a line of text
        or nothing: that refusal goes out in JSON, as every other one."""
        status = self.get_status()
        if status < 400:
            return super().finish(chunk)
        message = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
        return self._refuse_handshake(render_error(None, shape=self.error_shape, status=status,
                                                       reason=str(message or reason(self))))

    def _refuse_handshake(self, answer: ErrorAnswer) -> "asyncio.Future[None]":
        """The one way a handshake is refused: ``answer`` as the JSON body, counted in the metrics.

        Headers set before (``Allow``, ``Sec-WebSocket-Version``) stay; ``answer``'s are added.
        """
        self.context.pipeline.metrics.count_request(self._endpoint(), answer.status)
        self.set_status(answer.status)
        for name, value in answer.headers.items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        return super().finish(dumps(answer.body))

    def open(self, agent_name: str | None = None) -> None:
        self.set_nodelay(True)
        self._write_frame = frame_writer(self)  # None: compressed, so the public path
        try:
            self.target = self.context.target(agent_name)
        except ApiError as exc:
            self.send_nowait(render_error(exc).body)
            self.close(CLOSE_POLICY_VIOLATION, exc.message[:120])
            return
        self.context.lifecycle.sockets.add(self)

    def on_message(self, message: str | bytes) -> None:
        if self.target is None or self.closed:
            return
        text = self._text_or_refuse(message)
        if text is None:
            return
        try:
            body = load_json_object(text)
            if body.get("type") == "cancel":
                self._cancel_current()
                return
            request = parse_prompt_object(body)
            if self.waiting is not None and len(self.waiting) >= MAX_QUEUED_PROMPTS:
                raise Overloaded(f"Too many prompts waiting on this connection (max {MAX_QUEUED_PROMPTS})")
        except ApiError as exc:
            self.send_nowait(render_error(exc).body)
            return
        if self.current is None:
            self.phase = "starting"
            self.current = asyncio.ensure_future(self._serve_one(request))
            self.context.lifecycle.busy.add(self)
        else:
            if self.waiting is None:
                self.waiting = collections.deque()
            self.waiting.append(request)

    def on_close(self) -> None:
        self.closed = True
        self.context.lifecycle.sockets.discard(self)
        self.context.lifecycle.busy.discard(self)
        if self.current is not None:
            self.current.cancel()

    # -- sending -------------------------------------------------------------------------

    def backed_up(self) -> bool:
        """True while the socket holds bytes the kernel has not taken yet (a slow reader)."""
        return websocket_backed_up(self)

    def send_text_nowait(self, text: str) -> "asyncio.Future[None]":
        """Queue an encoded message; the future is done once the kernel took it. ClientGone if closed."""
        protocol = self.ws_connection
        if protocol is None or protocol.is_closing():
            raise ClientGone()
        try:
            if self._write_frame is not None:
                return self._write_frame(True, TEXT_OPCODE, text.encode())
            return self.write_message(text)
        except (StreamClosedError, tornado.websocket.WebSocketClosedError):
            raise ClientGone() from None

    def send_nowait(self, message: dict[str, Any]) -> "asyncio.Future[None]":
        """Queue a JSON message on the socket; ClientGone if it is closed."""
        return self.send_text_nowait(dumps(message))

    async def send(self, message: dict[str, Any]) -> None:
        """Send a JSON message and wait until the socket took it (backpressure).

        When the kernel takes the message at once there is nothing to wait for, and the run
        goes on in the same loop pass.
        """
        written = self.send_nowait(message)
        if not written.done():
            try:
                await written
            except (tornado.websocket.WebSocketClosedError, StreamClosedError):
                raise ClientGone() from None

    def _text_or_refuse(self, message: str | bytes) -> str | None:
        """The message's text; None once a binary or too big message is refused (error, close)."""
        if isinstance(message, bytes):
            self._refuse("Binary messages are not supported; send JSON text", "unsupported_data",
                         CLOSE_UNSUPPORTED_DATA)
            return None
        if len(message) > self.context.max_ws_message_size:
            self._refuse(f"Message is larger than {self.context.max_ws_message_size} bytes",
                         "message_too_big", CLOSE_MESSAGE_TOO_BIG)
            return None
        return message

    def _refuse(self, error: str, code: str, close_code: int) -> None:
        try:
            self.send_nowait({"error": error, "code": code})
        except ClientGone:
            return
        self.close(close_code, error[:120])

    # -- running prompts -----------------------------------------------------------------

    def _cancel_current(self) -> None:
        """Stop the prompt in service, whatever its phase; once it is being cancelled, the
        next cancel is for the next prompt waiting, if any (so each prompt sent and cancelled
        in a row is cancelled), else it adds nothing.

        The worker task is cancelled only while it runs the prompt: a task cancelled before
        its first step never enters its ``try``, so its cleanup would never run.
        """
        if self.phase == "running" and self.current is not None:
            self.phase = "cancelling"
            self.current.cancel()
        elif self.phase == "starting":
            self.phase = "cancelling"  # the worker answers "cancelled" instead of running it
        elif self.phase == "cancelling" and self.waiting is not None:
            for index, request in enumerate(self.waiting):
                if request is not None:
                    self.waiting[index] = None
                    return
        elif self.phase == "idle":
            self.send_nowait({"error": "No prompt is running", "code": "nothing_to_cancel"})

    async def _serve_one(self, request: PromptRequest | None) -> None:
        """Serve ``request``, then the prompts that came meanwhile, in order (one task per burst)."""
        try:
            while True:
                await self._serve_or_skip(request)
                if self.closed or not self.waiting:
                    return
                request = self.waiting.popleft()
                self.phase = "starting" if request is not None else "cancelling"
        except (ClientGone, asyncio.CancelledError):
            pass
        finally:
            self.phase = "idle"
            if self.current is asyncio.current_task():
                self.current = None
            self.context.lifecycle.busy.discard(self)

    async def _serve_or_skip(self, request: PromptRequest | None) -> None:
        """Serve one prompt, or only answer "cancelled" when a cancel came before it began."""
        shutdown = False
        if self.phase != "cancelling" and request is not None:
            self.phase = "running"
            try:
                await self._serve_prompt(request)
                return
            except asyncio.CancelledError as exc:
                if self.closed:
                    raise
                shutdown = cancelled_for_shutdown(exc)
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # the cancel was for that prompt, not for this task
        else:
            self.trace = RequestTrace.from_headers(self.request.headers)
            self._account(None, "cancelled", time.monotonic())
        self.phase = "idle"
        if shutdown:
            await self.send(render_error(ShuttingDown("Server is shutting down; the run was stopped")).body)
        else:
            await self.send({"type": "cancelled"})

    async def _serve_prompt(self, request: PromptRequest) -> None:
        pipeline = self.context.pipeline
        ticket = None
        outcome = "complete"
        started = time.monotonic()
        self.trace = trace = RequestTrace.from_headers(self.request.headers)  # a new id for every prompt
        try:
            target = self.target
            assert target is not None  # set by get() before any message is read
            if self.context.gateway is not None and "/agent/" not in self.request.path:
                target = self.context.model_target(request.model)  # the prompt's own model
            ticket = await pipeline.admit(request, self.request.remote_ip or "unknown", self.request.headers,
                                          target, trace=trace)
            ticket.route = self.request.path
            events = _SocketEvents(self)
            result = await pipeline.run(ticket, target, events)
            await events.flush()
            await self.send({"type": "complete", "result": result.to_result_dict(), "request_id": trace.request_id})
        except ClientGone:
            outcome = "client_gone"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as exc:
            if not isinstance(exc, ApiError):
                log.exception("WebSocket prompt failed")
            error = render_error(exc)
            outcome = error.body["code"]
            await self.send(error.body)
        finally:
            if ticket is not None:
                pipeline.finish(ticket)  # a run that never started gives its place back
            self._account(ticket, outcome, started)

    def _endpoint(self) -> str:
        # From the path: a handshake refused before routing (405, bad escapes) has no path_kwargs.
        return "agent_ws" if "/agent/" in self.request.path else "model_ws"

    def _account(self, ticket: Ticket | None, outcome: str, started: float) -> None:
        """Metrics, the trace's end and an access log line per prompt, as HTTP requests get."""
        self.context.pipeline.metrics.count_request(self._endpoint(), outcome)
        self.context.pipeline.end_trace(self.trace, outcome, ticket)
        log_access(logging.INFO, method="WS", path=self.request.path, route=self._endpoint(), status=outcome,
                   ticket=ticket, trace=self.trace, remote_ip=self.request.remote_ip,
                   seconds=time.monotonic() - started)
