"""The OpenAPI description of the OpenAI-compatible front (``/v1/models``, ``/v1/chat/completions``).

:func:`~monoai_tornado.openapi.build_openapi` takes these schemas, and these builders for the
operations of the route table's ``/v1`` routes.
"""
from __future__ import annotations

from typing import Callable

from .chat_request import CHAT_FIELDS, INCLUDE_USAGE
from .fields import object_schema
from .openapi_parts import COUNT, JSON, SSE, STRING, Schema, json_post, json_response, rate_limited, sse_event
from .openapi_parts import obj as _obj
from .openapi_parts import ref as _component

ERROR_TYPES = ["invalid_request_error", "authentication_error", "permission_error", "not_found_error",
               "rate_limit_error", "api_error", "overloaded_error"]


def _ref(name: str) -> Schema:
    return _component("schemas", name)


_TOOL_CALL = _obj({"id": STRING, "type": {"const": "function"},
                   "function": _obj({"name": STRING, "arguments": {"type": "string",
                                                                   "description": "JSON text."}})})
#: A tool call in a request, as the server reads it: ``id`` and ``type`` may be left out.
_ASKED_CALL = _obj({"id": STRING, "type": {"description": "\"function\" (not read)."},
                    "function": _obj({"name": STRING, "arguments": {"type": "string", "description": "JSON text."}},
                                     ["name"])}, ["function"])
_FINISH = {"enum": ["stop", "length", "tool_calls"]}


def _when(field: str, value: Schema, then: Schema) -> Schema:
    """``then`` applies when ``field`` is present and matches ``value`` (JSON Schema ``if``)."""
    return {"if": {"required": [field], "properties": {field: value}}, "then": then}


def _or_null(schema: Schema) -> Schema:
    """``schema`` or ``null``: OpenAI's API, and so this front, take ``null`` as "not set"."""
    return {"oneOf": [schema, {"type": "null"}]}


def v1_schemas() -> dict[str, Schema]:
    """The component schemas of the ``/v1`` routes."""
    text_part = _obj({"type": {"const": "text"}, "text": STRING})
    return {
        "ChatMessage": _obj({
            "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": {"oneOf": [STRING, {"type": "array", "items": text_part}, {"type": "null"}]},
            "name": {"description": "A string; any other value is ignored."},
            "tool_calls": {"description": "On assistant messages: a list of calls (or null); ignored on others."},
            "tool_call_id": {"description": "Required on tool messages, a string; ignored on others."},
        }, ["role"]) | {"allOf": [
            _when("role", {"const": "assistant"}, {"properties": {"tool_calls": _or_null(
                {"type": "array", "items": _ASKED_CALL})}}),
            # A tool message answers a call: without its tool_call_id the server refuses it (400).
            _when("role", {"const": "tool"}, {"required": ["tool_call_id"], "properties": {"tool_call_id": STRING}}),
        ]},
        "ChatCompletionRequest": object_schema(CHAT_FIELDS, required=["messages"], properties={
            "messages": {"type": "array", "minItems": 1, "items": _ref("ChatMessage"),
                         "description": "The whole conversation; absent, empty or not a list: 400 "
                                        "missing_prompt."},
            "stream_options": _or_null(object_schema([INCLUDE_USAGE])),
            "tools": _or_null({"type": "array", "items": _obj({"type": {"const": "function"}, "function": _obj(
                {"name": {"type": "string", "minLength": 1},
                 "description": {"description": "Passed on to the model as given."},
                 "parameters": {"type": "object"}}, ["name"])}),
                "description": "Passed to a backend that supports tools; else 400 tools_not_supported. "
                               "Agents run their own tools and take none."}),
            "tool_choice": _or_null({"oneOf": [
                {"enum": ["none", "auto", "required"]},
                {"type": "object", "required": ["type", "function"],
                 "properties": {"type": {"const": "function"},
                                "function": {"type": "object", "required": ["name"],
                                             "properties": {"name": STRING}}}}]}),
        }, allOf=[
            # A tool_choice other than "none" picks among the tools: without any, 400 invalid_json.
            _when("tool_choice", {"not": {"enum": ["none", None]}},
                  {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}}),
            # An agent runs its own tools: tools go to the model only, else 400 tools_not_supported.
            _when("tools", {"type": "array", "minItems": 1},
                  {"properties": {"model": {"not": {"pattern": "^agent/"}}}}),
        ]),
        "ChatCompletion": _obj({
            "id": STRING, "object": {"const": "chat.completion"}, "created": COUNT, "model": STRING,
            "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": _obj({
                "index": {"const": 0},
                "message": _obj({"role": {"const": "assistant"}, "content": {"type": ["string", "null"]},
                                 "tool_calls": {"type": "array", "items": _TOOL_CALL}}, ["role", "content"]),
                "finish_reason": _FINISH})},
            "usage": _ref("ChatUsage"),
        }),
        "ChatCompletionChunk": _obj({
            "id": STRING, "object": {"const": "chat.completion.chunk"}, "created": COUNT, "model": STRING,
            "choices": {"type": "array", "maxItems": 1, "items": _obj({
                "index": {"const": 0},
                "delta": _obj({"role": {"const": "assistant"}, "content": STRING,
                               "tool_calls": {"type": "array", "items": {"type": "object"}}}, []),
                "finish_reason": {"oneOf": [_FINISH, {"type": "null"}]}})},
            "usage": _ref("ChatUsage"),
        }, ["id", "object", "created", "model", "choices"]),
        "ChatUsage": _obj({"prompt_tokens": COUNT, "completion_tokens": COUNT, "total_tokens": COUNT,
                           "cost_usd": {"type": "number", "minimum": 0,
                                        "description": "USD, rounded to 1e-9; only for a model with prices."}},
                          ["prompt_tokens", "completion_tokens", "total_tokens"]),
        "ModelList": _obj({"object": {"const": "list"}, "data": {"type": "array", "items": _obj({
            "id": STRING, "object": {"const": "model"}, "created": COUNT, "owned_by": STRING})}}),
        "OpenAIError": _obj({"error": _obj({
            "message": STRING, "type": {"enum": ERROR_TYPES},
            "code": {"type": "string", "description": "Our code (API.md), e.g. model_not_found."},
            "param": {"type": "null"}})}),
    }


_STREAM_DESCRIPTION = (
    "With `\"stream\": true`: server-sent `data:` lines, each a `chat.completion.chunk` (the first "
    "delta carries `role`, then `content` or `tool_calls` deltas, then a chunk with `finish_reason`, "
    "then with `stream_options.include_usage` a chunk with `choices: []` and `usage`), last "
    "`data: [DONE]`. An error after the stream began is one `data: {\"error\": {...}}` line, then "
    "the stream ends. Rate-limit headers go out before the first byte."
)


def _error(description: str) -> Schema:
    return json_response(_ref("OpenAIError"), description)


def v1_operations(rate_headers: dict[str, Schema] | None,
                  retry_after: Schema | None) -> dict[str, Callable[[], Schema]]:
    """The builders of the ``/v1`` path items by operationId; ``rate_headers`` when a limiter is on."""
    ok: Schema = {"description": "A chat completion, or its chunks when streamed.", "content": {
        JSON: {"schema": _ref("ChatCompletion")},
        SSE: {"schema": sse_event(_STREAM_DESCRIPTION, "JSON as x-sse-data says, or [DONE] last."),
              "x-sse-data": {"oneOf": [_ref("ChatCompletionChunk"), _ref("OpenAIError")]}}}}
    responses: Schema = {
        "200": ok,
        "400": _error("A malformed field (invalid_json), no messages (missing_prompt), tools a backend "
                      "cannot take (tools_not_supported)."),
        "404": _error("The model is not served (model_not_found)."),
        "413": _error("The body is over the size limit (payload_too_large)."),
        "500": _error("A bug in the server (internal_error)."),
        "502": _error("The model backend failed (backend_error)."),
        "503": _error("Limiter unreachable, server at its limit of runs, or shutting down."),
        "504": _error("The model backend did not answer in time (backend_timeout)."),
    }
    rate_limited(ok, responses, _error("A rate limit is exhausted (rate_limited); nothing was counted."),
                 rate_headers, retry_after)
    models: Schema = {"get": {
            "operationId": "listModelsV1", "summary": "OpenAI-compatible: the model and the agents (agent/NAME)",
            "tags": ["openai"], "responses": {"200": {"description": "The models served.",
                                                      "content": {JSON: {"schema": _ref("ModelList")}}}}}}
    chat = json_post("createChatCompletion", "openai",
                     "OpenAI-compatible chat completion (set your OpenAI client's base URL to /v1)",
                     _ref("ChatCompletionRequest"), responses, _STREAM_DESCRIPTION)
    return {"listModelsV1": lambda: models, "createChatCompletion": lambda: chat}
