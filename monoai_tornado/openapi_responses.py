"""The OpenAPI description of the Responses front (``/v1/responses``, ``/v1/responses/{response_id}``).

:func:`~monoai_tornado.openapi.build_openapi` takes these schemas and the builders of the
route table's ``createResponse`` and ``getResponse`` operations (``GET`` and ``DELETE``).
"""
from __future__ import annotations

from typing import Callable

from .dialects.responses import RESPONSES_FIELDS
from .openapi_parts import COUNT, JSON, SSE, STRING, Schema, json_post, rate_limited, sse_event
from .openapi_parts import obj as _obj
from .openapi_v1 import _error, _or_null, _ref


_NAME = {"type": "string", "minLength": 1}
_TEXT_PART = _obj({"type": {"enum": ["input_text", "output_text", "text"]}, "text": STRING})
_TEXT = {"oneOf": [STRING, {"type": "array", "items": _TEXT_PART}]}

EVENTS = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
          "response.output_text.delta", "response.output_text.done", "response.content_part.done",
          "response.function_call_arguments.delta", "response.function_call_arguments.done",
          "response.output_item.done", "response.completed", "response.incomplete", "response.failed"]

_STREAM_DESCRIPTION = (
    "With `\"stream\": true`: server-sent events, each `event: TYPE` then `data: {\"type\": TYPE, "
    "\"sequence_number\": N, ...}` with N from 0: `response.created`, `response.in_progress`, the "
    "output items (`response.output_item.added`, `response.content_part.added`, "
    "`response.output_text.delta`..., `.done` events; function calls with "
    "`response.function_call_arguments.delta` / `.done`), then `response.completed`, "
    "`response.incomplete` (max_output_tokens) or `response.failed` (with `error`). The same events "
    "are the WebSocket mode's messages (`WS /v1/responses`, `{\"type\": \"response.create\", ...}`)."
)


def responses_schemas() -> dict[str, Schema]:
    """The component schemas of the Responses routes."""
    item = {"oneOf": [
        _obj({"type": {"const": "message"}, "role": {"enum": ["user", "system", "developer", "assistant"]},
              "content": _TEXT}, ["role", "content"]),
        _obj({"type": {"const": "function_call"}, "call_id": _NAME, "name": _NAME,
              "arguments": {"type": "string", "description": "The JSON text of the arguments."}},
             ["type", "call_id", "name"]),
        _obj({"type": {"const": "function_call_output"}, "call_id": _NAME, "output": _TEXT}),
    ]}
    output_item = {"oneOf": [
        _obj({"type": {"const": "message"}, "id": STRING, "status": STRING, "role": {"const": "assistant"},
              "content": {"type": "array", "items": _obj({"type": {"const": "output_text"}, "text": STRING},
                                                         ["type", "text"])}}),
        _obj({"type": {"const": "function_call"}, "id": STRING, "call_id": STRING, "name": STRING,
              "arguments": STRING, "status": STRING}),
    ]}
    return {
        "ResponseCreateRequest": _obj({
            **{field.name: field.schema() for field in RESPONSES_FIELDS},
            "input": {"oneOf": [STRING, {"type": "array", "minItems": 1, "items": item}],
                      "description": "A user message, or items; with previous_response_id, the new ones."},
            "instructions": _or_null(STRING),
            "previous_response_id": _or_null({"type": "string", "description": "Continue this response's "
                                              "conversation (yours, stored or this WebSocket's last); unknown: "
                                              "400 previous_response_not_found."}),
            "metadata": _or_null({"type": "object", "maxProperties": 16, "propertyNames": {"maxLength": 64},
                                  "additionalProperties": {"type": "string", "maxLength": 512}}),
            "tools": _or_null({"type": "array", "items": _obj({
                "type": {"const": "function", "description": "Other tool types: 400 unsupported_tool."},
                "name": _NAME, "description": _or_null(STRING), "parameters": _or_null({"type": "object"})},
                ["type", "name"])}),
            "tool_choice": _or_null({"oneOf": [
                {"enum": ["none", "auto", "required"]},
                _obj({"type": {"const": "function"}, "name": STRING})]}),
        }, ["model", "input"]) | {"allOf": [{
            # An agent runs its own tools: tools go to the model only, else 400 tools_not_supported.
            "if": {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}},
            "then": {"properties": {"model": {"not": {"pattern": "^agent/"}}}}}]},
        "Response": _obj({
            "id": STRING, "object": {"const": "response"}, "created_at": COUNT,
            "status": {"enum": ["completed", "incomplete", "failed", "in_progress"]},
            "model": STRING, "output": {"type": "array", "items": output_item},
            "output_text": STRING, "previous_response_id": {"type": ["string", "null"]},
            "incomplete_details": _or_null(_obj({"reason": {"const": "max_output_tokens"}})),
            "error": _or_null(_obj({"code": STRING, "message": STRING})),
            "usage": _or_null(_obj({"input_tokens": COUNT, "output_tokens": COUNT, "total_tokens": COUNT,
                                    "cost_usd": {"type": "number"}}, ["input_tokens", "output_tokens",
                                                                      "total_tokens"])),
        }, ["id", "object", "created_at", "status", "model", "output", "usage", "previous_response_id", "error"]),
        "ResponseDeleted": _obj({"id": STRING, "object": {"const": "response"}, "deleted": {"const": True}}),
        "ResponseEvent": _obj({"type": {"enum": EVENTS}, "sequence_number": COUNT}),
    }


def responses_operations(rate_headers: dict[str, Schema] | None,
                         retry_after: Schema | None) -> dict[str, Callable[[], Schema]]:
    """The builders of the Responses path items by operationId; ``rate_headers`` when a limiter is on."""
    ok: Schema = {"description": "A response, or its events when streamed.", "content": {
        JSON: {"schema": _ref("Response")},
        SSE: {"schema": sse_event(_STREAM_DESCRIPTION, "JSON as x-sse-data says.", EVENTS),
              "x-sse-data": _ref("ResponseEvent")}}}
    answers: Schema = {
        "200": ok,
        "400": _error("A malformed field or item (invalid_json), no input (missing_prompt), a tool that is not a "
                      "function (unsupported_tool), an unknown previous_response_id "
                      "(previous_response_not_found), a conversation past the bounds (conversation_too_long)."),
        "404": _error("The model is not served (model_not_found)."),
        "413": _error("The body is over the size limit (payload_too_large)."),
        "500": _error("A bug in the server (internal_error)."),
        "502": _error("The model backend failed (backend_error)."),
        "503": _error("Limiter or response store unreachable, server at its limit of runs, or shutting down."),
        "504": _error("The model backend did not answer in time (backend_timeout)."),
    }
    rate_limited(ok, answers, _error("A rate limit is exhausted (rate_limited); nothing was counted."),
                 rate_headers, retry_after)
    create = json_post("createResponse", "openai", "OpenAI Responses API (base URL /v1; WebSocket mode on this path)",
                       _ref("ResponseCreateRequest"), answers, _STREAM_DESCRIPTION)
    parameters = [
        {"name": "response_id", "in": "path", "required": True, "schema": STRING},
        {"name": "user", "in": "query", "required": False, "schema": STRING,
         "description": "Whose response, without an API key (as the body's user was)."}]
    missing = _error("Unknown, expired, deleted or another user's (not_found).")
    one: Schema = {
        "parameters": parameters,
        "get": {"operationId": "getResponse", "summary": "A stored response (your own)", "tags": ["openai"],
                "responses": {"200": {"description": "The response.", "content": {JSON: {"schema": _ref("Response")}}},
                              "404": missing}},
        "delete": {"operationId": "deleteResponse", "summary": "Delete a stored response (your own)",
                   "tags": ["openai"],
                   "responses": {"200": {"description": "Deleted.",
                                         "content": {JSON: {"schema": _ref("ResponseDeleted")}}},
                                 "404": missing}},
    }
    return {"createResponse": lambda: create, "getResponse": lambda: one}
