"""The streamed events of one Responses answer, numbered from 0 (API.md Part 3).

The same events go out as server-sent events (``event: TYPE`` + ``data: {...}``) on
``POST /v1/responses`` with ``stream`` and as JSON text messages on the WebSocket mode: this
module makes them as dicts, each transport frames them.

>>> from monoai_tornado.dialects.responses import ResponseBuilder, parse_responses_object
>>> events = ResponseEvents(ResponseBuilder(parse_responses_object({"model": "m", "input": "hi"})))
>>> [(e["type"], e["sequence_number"]) for e in events.text("Hel")][-3:]
[('response.output_item.added', 2), ('response.content_part.added', 3), ('response.output_text.delta', 4)]
"""
from __future__ import annotations

from typing import Any

from ..conversation import RunResult
from .responses import ResponseBuilder, new_id

__all__ = ["ResponseEvents", "error_event"]

Event = dict[str, Any]


def error_event(body: dict[str, Any], *, sequence_number: int = 0, status: int | None = None) -> Event:
    """An ``error`` event from an error body in OpenAI's shape: the fields flat (as the
    Responses stream's ``error`` event) and nested under ``error`` (as the WebSocket mode's)."""
    error = body.get("error")
    if not isinstance(error, dict):  # our own shape: {"error": message, "code": code}
        error = {"message": str(error), "type": "invalid_request_error", "code": body.get("code"), "param": None}
    event: Event = {"type": "error", "sequence_number": sequence_number, "code": error.get("code"),
                    "message": error.get("message"), "param": None, "error": error}
    if status is not None:
        event["status"] = status
    return event


class ResponseEvents:
    """The events of one response, in order: opening, text deltas, closing (or failing)."""

    def __init__(self, builder: ResponseBuilder) -> None:
        self.builder = builder
        self.sequence = 0
        self.opened = False
        self.text_open = False
        self.finished = False

    def event(self, kind: str, **fields: Any) -> Event:
        """The next event: ``{"type": kind, "sequence_number": N, **fields}``."""
        event: Event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def opening(self) -> list[Event]:
        """``response.created`` and ``response.in_progress``, the first time; then nothing."""
        if self.opened:
            return []
        self.opened = True
        response = self.builder.response()
        return [self.event("response.created", response=response),
                self.event("response.in_progress", response=response)]

    def _open_text(self) -> list[Event]:
        if self.text_open:
            return []
        self.text_open = True
        message_id = self.builder.message_id
        return [self.event("response.output_item.added", output_index=0,
                           item=self.builder.message_item("", "in_progress")),
                self.event("response.content_part.added", item_id=message_id, output_index=0, content_index=0,
                           part={"type": "output_text", "text": "", "annotations": []})]

    def text(self, delta: str) -> list[Event]:
        """A piece of the answer's text (opening the message first)."""
        return [*self.opening(), *self._open_text(),
                self.event("response.output_text.delta", item_id=self.builder.message_id, output_index=0,
                           content_index=0, delta=delta, logprobs=[])]

    def closing(self, result: RunResult) -> tuple[list[Event], dict[str, Any]]:
        """The last events of a finished run, and the whole ``response`` they end with."""
        events = self.opening()
        builder = self.builder
        message = bool(result.text) or not result.tool_calls
        if message:
            if not self.text_open:  # nothing streamed (an agent's answer, or an empty one)
                events += self._open_text()
                if result.text:
                    events += self.text(result.text)
            message_id = builder.message_id
            part = {"type": "output_text", "text": result.text, "annotations": []}
            events += [
                self.event("response.output_text.done", item_id=message_id, output_index=0, content_index=0,
                           text=result.text, logprobs=[]),
                self.event("response.content_part.done", item_id=message_id, output_index=0, content_index=0,
                           part=part),
                self.event("response.output_item.done", output_index=0, item=builder.message_item(result.text)),
            ]
        call_ids = [new_id("fc") for _ in result.tool_calls]
        for offset, (call, item_id) in enumerate(zip(result.tool_calls, call_ids)):
            index = offset + int(message)
            events += [
                self.event("response.output_item.added", output_index=index,
                           item=builder.call_item(call, item_id, "in_progress")),
                self.event("response.function_call_arguments.delta", item_id=item_id, output_index=index,
                           delta=call.arguments),
                self.event("response.function_call_arguments.done", item_id=item_id, output_index=index,
                           name=call.name, arguments=call.arguments),
                self.event("response.output_item.done", output_index=index, item=builder.call_item(call, item_id)),
            ]
        response = builder.finished(result, call_ids)
        events.append(self.event(f"response.{response['status']}", response=response))
        self.finished = True
        return events, response

    def failed(self, body: dict[str, Any]) -> list[Event]:
        """``response.failed`` for an error body (OpenAI's shape) after the stream began."""
        error = error_event(body)["error"]
        response = self.builder.response("failed", error={"code": error.get("code") or "server_error",
                                                          "message": error.get("message") or ""})
        self.finished = True
        return [*self.opening(), self.event("response.failed", response=response)]
