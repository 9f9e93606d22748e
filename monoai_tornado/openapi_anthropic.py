"""The OpenAPI description of the Anthropic Messages front (``/v1/messages`` and its
``count_tokens``): what the codec (:mod:`monoai_tornado.dialects.anthropic`) accepts, exactly,
and what it answers."""
from __future__ import annotations

from typing import Callable

from .dialects.anthropic import MESSAGES_FIELDS, METADATA_USER_ID
from .fields import object_schema
from .openapi_parts import COUNT, JSON, SSE, STRING, Schema, json_post, json_response, rate_limited, sse_event
from .openapi_parts import obj as _obj
from .openapi_v1 import ERROR_TYPES, _or_null, _ref, _when

NAME: Schema = {"type": "string", "minLength": 1}


def _block(kind: str, properties: dict[str, Schema], required: list[str]) -> Schema:
    return _obj({"type": {"const": kind}, **properties}, ["type", *required])


def anthropic_schemas() -> dict[str, Schema]:
    """The component schemas of the Anthropic routes."""
    text = _block("text", {"text": STRING}, ["text"])
    texts: Schema = {"oneOf": [STRING, {"type": "array", "items": text}]}
    tool_use = _block("tool_use", {"id": NAME, "name": NAME, "input": {"type": "object"}}, ["id", "name"])
    tool_result = _block("tool_result", {"tool_use_id": NAME, "content": _or_null(texts),
                                         "is_error": _or_null({"type": "boolean"})}, ["tool_use_id"])
    reasoning = [_block(kind, {}, []) for kind in ("thinking", "redacted_thinking")]
    content = {
        "system": texts,  # mid-conversation system text (Claude Code): joined to the system turn
        "user": {"oneOf": [STRING, {"type": "array", "items": {"oneOf": [text, tool_result]}}]},
        "assistant": {"oneOf": [STRING, {"type": "array", "items": {"oneOf": [text, tool_use, *reasoning]}}]},
    }
    request: dict[str, Schema] = {
        **{field.name: field.schema() for field in MESSAGES_FIELDS},
        "messages": {"type": "array", "minItems": 1, "items": _ref("AnthropicMessage"),
                     "description": "The conversation; absent, empty or not a list: 400."},
        "system": _or_null(texts),
        "tools": _or_null({"type": "array", "items": _obj({
            "name": NAME, "description": _or_null(STRING), "input_schema": _or_null({"type": "object"}),
            "type": {"enum": ["custom", None], "description": "Server tools are not supported."}}, ["name"])}),
        "tool_choice": _or_null({"oneOf": [
            _obj({"type": {"enum": ["auto", "any", "none"]}}, ["type"]),
            _obj({"type": {"const": "tool"}, "name": NAME}, ["type", "name"])]}),
        "metadata": _or_null(object_schema([METADATA_USER_ID])),
    }
    rules = [
        # A tool_choice other than none picks among the tools: without any, 400.
        _when("tool_choice", {"type": "object", "properties": {"type": {"not": {"const": "none"}}}},
              {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}}),
        # An agent runs its own tools: tools go to the model only, else 400 tools_not_supported.
        _when("tools", {"type": "array", "minItems": 1}, {"properties": {"model": {"not": {"pattern": "^agent/"}}}}),
    ]
    counting = {name: schema for name, schema in request.items() if name != "max_tokens"}
    usage = _obj({"input_tokens": COUNT, "output_tokens": COUNT}, ["input_tokens", "output_tokens"])
    answer_block: Schema = {"oneOf": [text, _block("tool_use", {"id": STRING, "name": STRING,
                                                                "input": {"type": "object"}}, ["id", "name", "input"])]}
    return {
        "AnthropicMessage": _obj({"role": {"enum": ["user", "assistant", "system"]}, "content": {}},
                                 ["role", "content"])
        | {"allOf": [_when("role", {"const": role}, {"properties": {"content": schema}})
                     for role, schema in content.items()]},
        "MessagesRequest": _obj(request, ["model", "max_tokens", "messages"]) | {"allOf": rules},
        "CountTokensRequest": _obj(counting, ["model", "messages"]) | {"allOf": rules},
        "TokenCount": _obj({"input_tokens": COUNT}),
        "AnthropicMessageResult": _obj({
            "id": {"type": "string", "pattern": "^msg_"}, "type": {"const": "message"},
            "role": {"const": "assistant"}, "model": STRING, "content": {"type": "array", "items": answer_block},
            "stop_reason": {"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use"]},
            "stop_sequence": {"type": ["string", "null"]}, "usage": usage}),
        "AnthropicError": _obj({"type": {"const": "error"}, "error": _obj({
            "type": {"enum": ERROR_TYPES}, "message": STRING})}),
    }


_STREAM_DESCRIPTION = (
    "With `\"stream\": true`: Anthropic's server-sent events, each `event: TYPE` then `data: {\"type\": "
    "TYPE, ...}`: `message_start` (the message, empty content, input tokens), `ping`, per content block "
    "(text, then each tool use) `content_block_start`, `content_block_delta` (`text_delta` or "
    "`input_json_delta`), `content_block_stop`; `message_delta` (`stop_reason`, `stop_sequence`, `usage`); "
    "`message_stop`. An error after the stream began is one `event: error`, then the stream ends."
)


def _event(kind: str, properties: dict[str, Schema] | None = None) -> Schema:
    return _obj({"type": {"const": kind}, **(properties or {})})


_INDEX: Schema = {"index": COUNT}
#: Each event's ``data``, by event name.
_EVENTS: dict[str, Schema] = {
    "message_start": _event("message_start", {"message": _obj({
        "id": {"type": "string", "pattern": "^msg_"}, "type": {"const": "message"}, "role": {"const": "assistant"},
        "model": STRING, "content": {"type": "array", "maxItems": 0}, "stop_reason": {"type": "null"},
        "stop_sequence": {"type": "null"}, "usage": _obj({"input_tokens": COUNT, "output_tokens": COUNT})})}),
    "ping": _event("ping"),
    "content_block_start": _event("content_block_start", {**_INDEX, "content_block": {"oneOf": [
        _obj({"type": {"const": "text"}, "text": {"const": ""}}),
        _obj({"type": {"const": "tool_use"}, "id": STRING, "name": STRING, "input": {"type": "object"}})]}}),
    "content_block_delta": _event("content_block_delta", {**_INDEX, "delta": {"oneOf": [
        _obj({"type": {"const": "text_delta"}, "text": STRING}),
        _obj({"type": {"const": "input_json_delta"}, "partial_json": STRING})]}}),
    "content_block_stop": _event("content_block_stop", _INDEX),
    "message_delta": _event("message_delta", {
        "delta": _obj({"stop_reason": {"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use"]},
                       "stop_sequence": {"type": ["string", "null"]}}),
        "usage": _obj({"input_tokens": COUNT, "output_tokens": COUNT}, ["output_tokens"])}),
    "message_stop": _event("message_stop"),
    "error": _ref("AnthropicError"),
}


def _error(description: str) -> Schema:
    return json_response(_ref("AnthropicError"), description)


def anthropic_operations(rate_headers: dict[str, Schema] | None,
                         retry_after: Schema | None) -> dict[str, Callable[[], Schema]]:
    """The builders of the Anthropic path items by operationId; ``rate_headers`` when a limiter is on."""
    ok: Schema = {"description": "A message, or its events when streamed.", "content": {
        JSON: {"schema": _ref("AnthropicMessageResult")},
        SSE: {"schema": sse_event(_STREAM_DESCRIPTION, "JSON, by event name in x-sse-events.", list(_EVENTS)),
              "x-sse-events": _EVENTS}}}
    refusals: Schema = {
        "400": _error("A malformed field, image blocks, or tools a model cannot take (invalid_request_error)."),
        "401": _error("A wrong, revoked or expired API key (x-api-key or Authorization), or a missing one "
                      "when keys are required (authentication_error)."),
        "404": _error("The model is not served (not_found_error)."),
        "413": _error("The body is over the size limit."),
        "500": _error("A bug in the server (api_error)."),
        "503": _error("The limiter or key store is unreachable, or the server is shutting down."),
    }
    responses: Schema = {
        "200": ok, **refusals,
        "403": _error("The user id is refused by the validator, or the key may not use the model."),
        "502": _error("The model backend failed (api_error)."),
        "504": _error("The model backend did not answer in time (api_error)."),
        "529": _error("The server is at its limit of runs, or the upstream is overloaded (overloaded_error)."),
    }
    rate_limited(ok, responses, _error("A rate limit is exhausted (rate_limit_error)."), rate_headers, retry_after)
    messages = json_post("createMessage", "anthropic",
                         "Anthropic Messages (set your Anthropic client's base URL to this server)",
                         _ref("MessagesRequest"), responses, _STREAM_DESCRIPTION)
    count = json_post("countMessageTokens", "anthropic", "The prompt's tokens, as admission counts them",
                      _ref("CountTokensRequest"),
                      {"200": {"description": "The count.", "content": {JSON: {"schema": _ref("TokenCount")}}},
                       **refusals})
    return {"createMessage": lambda: messages, "countMessageTokens": lambda: count}
