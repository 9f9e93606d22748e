"""The OpenAPI 3.1 document of the HTTP endpoints a running app serves (``GET /openapi.json``).

The document follows the configuration: model paths only with a model, agent paths only with
agents (their names as the ``enum`` of the ``name`` path parameter), rate-limit headers and
429 answers only with a limiter, the admin bearer token only when one is set. WebSocket
endpoints are not HTTP operations; ``info.description`` describes them.

>>> doc = build_openapi("Demo", "0.1.0", has_model=True, agent_names=["assistant"],
...                     has_limiter=False, admin_token=False,
...                     operations=[("/", "getRoot"), ("/agent/{name}", "runAgent"), ("/model", "askModel")])
>>> sorted(doc["paths"])
['/', '/agent/{name}', '/model']
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from .fields import object_schema
from .keys.openapi import add_key_docs, key_operations
from .openapi_parts import ANY, COUNT, INTEGER, JSON, SSE, STRING, Schema, sse_event
from .openapi_parts import json_response as _json
from .openapi_parts import obj as _obj
from .openapi_parts import ref as _ref
from .openapi_responses import responses_operations, responses_schemas
from .openapi_anthropic import anthropic_operations, anthropic_schemas
from .openapi_v1 import v1_operations, v1_schemas
from .prompt_request import PROMPT_BODY
from .ratelimit.headers import RATE_LIMIT_HEADERS
from .static_files import static_assets

__all__ = ["build_openapi", "sse_event"]


def _error_schema(code: str | list[str] | None = None, *, retry_after: bool = False) -> Schema:
    """``Error`` narrowed to one code (or a few), optionally with ``retry_after``."""
    if code is None:
        return _ref("schemas", "Error")
    narrowed: Schema = {"properties": {"code": {"const": code} if isinstance(code, str) else {"enum": code}}}
    if retry_after:
        narrowed["properties"]["retry_after"] = {"type": "integer", "minimum": 1}
        narrowed["required"] = ["retry_after"]
    return {"allOf": [_ref("schemas", "Error"), narrowed]}


# --- components -------------------------------------------------------------------------------

FINISH_REASON: Schema = {"enum": ["stop", "length"],
                         "description": "length: the answer reached its max_tokens (or the user's token budget)."}

def _schemas(has_limiter: bool) -> dict[str, Schema]:
    usage = _ref("schemas", "Usage")
    schemas: dict[str, Schema] = {
        "PromptRequest": object_schema(PROMPT_BODY),  # the fields parse_prompt_object reads
        "Usage": _obj({
            "prompt_tokens": COUNT, "completion_tokens": COUNT,
            "total_tokens": {**COUNT, "description": "prompt_tokens + completion_tokens"},
            "estimated": {"const": True, "description": "Counted locally with tiktoken."},
            "cost_usd": {"type": "number", "minimum": 0,
                         "description": "What the run cost in USD (rounded to 1e-9); only for a model with prices."},
        }, ["prompt_tokens", "completion_tokens", "total_tokens"], additionalProperties=False,
            description="Tokens used; counted with tiktoken (estimated) when the backend reports none."),
        "ModelInfo": _obj({"provider": STRING, "name": STRING}),
        "ModelResult": _obj({"prompt": STRING, "response": STRING, "model": _ref("schemas", "ModelInfo"),
                             "usage": usage, "finish_reason": FINISH_REASON}),
        "Step": {
            "description": "One step of the agent loop: a model call, or a tool call and its outcome.",
            "oneOf": [
                _obj({"type": {"const": "model"}, "content": STRING, "usage": usage,
                      "tool_calls": {"type": "array", "items": _obj({"id": STRING, "name": STRING,
                                                                      "arguments": ANY})}},
                     title="ModelStep"),
                _obj({"type": {"const": "tool"}, "id": STRING, "name": STRING, "arguments": ANY,
                      "output": {"description": "What the tool returned (any JSON value); null on error."},
                      "error": {"type": ["string", "null"]}, "duration_ms": {"type": "number", "minimum": 0}},
                     title="ToolStep"),
            ],
        },
        "ToolStarted": _obj({"type": {"const": "tool_started"}, "id": STRING, "name": STRING, "arguments": ANY},
                            description="A tool call has started (streamed only, not in iterations)."),
        "AgentResult": _obj({
            "prompt": STRING, "response": STRING, "usage": usage,
            "iterations": {"type": "array", "items": _ref("schemas", "Step")},
            "stopped": {"const": "max_iterations", "description": "The loop hit its limit of model calls."},
            "finish_reason": FINISH_REASON,
            "model": _ref("schemas", "ModelInfo"),
        }, ["prompt", "response", "iterations", "usage", "finish_reason"]),
        "Error": _obj({
            "error": {"type": "string", "description": "Human readable message."},
            "code": {"type": "string", "description": "Machine code, e.g. invalid_json, missing_prompt, "
                                                       "not_found, payload_too_large, rate_limited."},
            "retry_after": {"type": "integer", "minimum": 1, "description": "Seconds (429 and 503)."},
            "upstream_status": {"type": "integer", "description": "The model server's own HTTP status, when "
                                                                  "the error comes from its answer."},
        }, ["error", "code"]),
        "Root": _obj({
            "msg": STRING, "started_at": {"type": "string", "format": "date-time"},
            "model": _ref("schemas", "ModelInfo"), "notice": STRING,
            "agents": {"type": "array", "items": STRING},
            "endpoints": {"type": "array", "items": STRING,
                          "description": "What is served, as \"METHOD /path\" (WS for WebSockets)."},
        }, ["msg", "started_at", "agents"]),
        "Health": _obj({"status": {"const": "ok"}, "app": STRING}),
        "ValidateUserRequest": _obj({"user_id": {"type": ["string", "integer"], "pattern": "\\S"}}, ["user_id"]),
        "ValidateUserResult": {"oneOf": [
            _obj({"valid": {"const": True}, "user_id": STRING, "normalized": {"type": ["string", "null"]}}),
            _obj({"valid": {"const": False}, "user_id": STRING, "error": STRING}),
        ]},
        "AgentList": _obj({"agents": {"type": "array", "items": _obj({
            "name": STRING, "description": STRING,
            "tools": {"type": "array", "items": _obj({"name": STRING, "description": STRING})},
        })}}),
        "LimiterNotConfigured": _obj({"message": {"const": "Rate limiter not configured"}}),
    }
    if has_limiter:
        schemas["LimiterStats"] = _obj({
            "limits": {"type": "array", "items": _obj({
                "name": STRING, "unit": {"enum": ["request", "token"]}, "value": INTEGER,
                "reset_unit": STRING, "reset_value": INTEGER, "window_seconds": INTEGER,
            })},
            "active_users": COUNT,
            "concurrency_limit": {"type": ["integer", "null"], "description": "Runs a user may have in flight."},
            "totals": _obj({"requests": INTEGER, "tokens": INTEGER}),
            "reserved_tokens": {**COUNT, "description": "Of totals.tokens, what runs in flight hold."},
            "windows": {"type": "object", "additionalProperties": _obj(
                {"used": INTEGER, "reserved": INTEGER, "users": INTEGER, "reset_in": {"type": "number"}})},
        })
        schemas["UserStats"] = _obj({
            "user_id": STRING,
            "usage": {"type": "object", "additionalProperties": COUNT},
            "remaining": {"type": "object", "additionalProperties": COUNT},
            "reset_in": {"type": "object", "additionalProperties": {"type": "number"}},
            "reserved": {"type": "object", "additionalProperties": COUNT,
                         "description": "Per limit, the part of usage reserved by runs in flight."},
            "concurrency": _obj({"limit": INTEGER, "in_flight": COUNT},
                                description="With a concurrency limit: the user's runs in flight."),
        }, ["user_id", "usage", "remaining", "reset_in", "reserved"])
    return schemas


def _headers() -> dict[str, Schema]:
    headers: dict[str, Schema] = {
        name: {"description": text, "schema": {"type": "integer" if name.startswith("x-") else "string"}}
        for name, text in RATE_LIMIT_HEADERS.items()
    }
    headers["Retry-After"] = {"description": "Seconds to wait before trying again.",
                              "required": True, "schema": {"type": "integer", "minimum": 1}}
    return headers


def _rate_headers() -> dict[str, Schema]:
    return {name: _ref("headers", name) for name in RATE_LIMIT_HEADERS}


def _responses(has_limiter: bool) -> dict[str, Schema]:
    responses = {
        "BadRequest": _json(_error_schema(), "The body is not a JSON object (invalid_json), the prompt is "
                                             "missing or blank (missing_prompt), a field is invalid, or the "
                                             "model server refused the request (upstream_rejected: a prompt "
                                             "over its context window...)."),
        "NotFound": _json(_error_schema("not_found"), "Unknown agent or path."),
        "PayloadTooLarge": _json(_error_schema("payload_too_large"), "The body is over the size limit."),
        "BackendError": _json(_error_schema("backend_error"), "The model backend failed or answered nonsense."),
        "InternalError": _json(_error_schema("internal_error"), "A bug in the server (no details are given)."),
        "BackendTimeout": _json(_error_schema("backend_timeout"), "The model backend did not answer in time."),
        "Unavailable": _json(_error_schema(["limiter_unavailable", "overloaded", "shutting_down", "upstream_busy"]),
                             "The rate limiter's store cannot be reached (limiter_unavailable), the "
                             "server is at its limit of concurrent runs (overloaded, with Retry-After), "
                             "it stopped the run to shut down (shutting_down), or the model server is "
                             "rate limited or overloaded (upstream_busy, with Retry-After)."),
        "Forbidden": _json(_error_schema("forbidden"), "The admin token is missing or wrong."),
    }
    if has_limiter:
        responses["RateLimited"] = _json(
            {"oneOf": [_error_schema(["rate_limited", "spend_limited"], retry_after=True),
                       _error_schema("too_many_concurrent")]},
            "A rate limit is exhausted (rate_limited), a spend limit has no money left for the prompt "
            "(spend_limited), or the user has as many runs in flight as the concurrency limit allows "
            "(too_many_concurrent); nothing was counted.",
            {"Retry-After": {"description": "Seconds to wait (rate_limited; spend_limited: to the window's end).",
                             "schema": {"type": "integer", "minimum": 1}}, **_rate_headers()},
        )
    return responses


# --- paths ------------------------------------------------------------------------------------

_SSE_DESCRIPTION = (
    "With `Accept: text/event-stream` the answer is server-sent events, flushed as they are "
    "produced: `event: chunk` (data `{\"content\"}`), `event: step` (agents: data `{\"step\"}`), "
    "then `event: complete` (data `{\"result\"}`) or `event: error` (data `{\"error\", \"code\"}`). "
    "Comment lines (`: keep-alive`) are sent during long silences. The headers (rate-limit ones "
    "included) go out with the first event, or after 1 s without one; an error before then, "
    "including a run failing before its first event, is a plain JSON answer with its own status."
)


def _sse_content(result: str) -> Schema:
    events = ["chunk", "step", "complete", "error"]
    return {
        "schema": sse_event(_SSE_DESCRIPTION, "JSON, by event name in x-sse-events.", events),
        "example": 'event: chunk\ndata: {"content":"Hello"}\n\n'
                   'event: complete\ndata: {"result":{"response":"Hello","usage":{}}}\n\n',
        "x-sse-events": {
            "chunk": {"type": "object", "required": ["content"], "properties": {"content": {"type": "string"}}},
            "step": {"type": "object", "required": ["step"],
                     "properties": {"step": {"oneOf": [_ref("schemas", "Step"), _ref("schemas", "ToolStarted")]}}},
            "complete": {"type": "object", "required": ["result"], "properties": {"result": _ref("schemas", result)}},
            "error": _ref("schemas", "Error"),
        },
    }


def _prompt_operation(summary: str, result: str, *, stream: bool, agent: bool, has_limiter: bool,
                      operation_id: str) -> Schema:
    content: Schema = {JSON: {"schema": _ref("schemas", result)}}
    if stream:
        content[SSE] = _sse_content(result)
    ok: Schema = {"description": f"The {'agent' if agent else 'model'} result.", "content": content}
    if has_limiter:
        ok["headers"] = _rate_headers()
    responses: Schema = {
        "200": ok,
        "400": _ref("responses", "BadRequest"),
        "413": _ref("responses", "PayloadTooLarge"),
        "500": _ref("responses", "InternalError"),
        "502": _ref("responses", "BackendError"),
        "503": _ref("responses", "Unavailable"),
        "504": _ref("responses", "BackendTimeout"),
    }
    responses["404"] = _ref("responses", "NotFound")  # an unknown agent, or model under --config
    if has_limiter:
        responses["429"] = _ref("responses", "RateLimited")
        responses["403"] = _json(_error_schema(["model_not_priced", "model_not_allowed"]),
                                 "The model has no prices and a spend limit applies, or the key may not use it.")
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["agents" if agent else "model"],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("schemas", "PromptRequest")}}},
        "responses": dict(sorted(responses.items())),
    }
    if stream:
        operation["description"] = ("Streams the answer internally; the response is the whole JSON "
                                    "result, or server-sent events. " + _SSE_DESCRIPTION)
    return operation


def _static_names() -> list[str]:
    return sorted(static_assets())


def _get(summary: str, response: Schema, operation_id: str, tag: str, *, errors: Schema | None = None,
         **extra: Any) -> Schema:
    return {"get": {"operationId": operation_id, "summary": summary, "tags": [tag],
                    "responses": {"200": response, **(errors or {})}, **extra}}


def _stats_operation(summary: str, schema: str, operation_id: str, has_limiter: bool, admin: bool,
                     parameters: list[Schema] | None = None) -> Schema:
    body: Schema = {"oneOf": [_ref("schemas", schema), _ref("schemas", "LimiterNotConfigured")]} \
        if has_limiter else _ref("schemas", "LimiterNotConfigured")
    operation: Schema = {"operationId": operation_id, "summary": summary, "tags": ["rate limits"],
                         "responses": {"200": _json(body, summary)}}
    if parameters:
        operation["parameters"] = parameters
    if has_limiter:
        operation["responses"]["503"] = _ref("responses", "Unavailable")
    if admin:
        operation["security"] = [{"adminToken": []}]
        operation["responses"]["403"] = _ref("responses", "Forbidden")
    return {"get": operation}


def _metrics_operation(admin: bool) -> Schema:
    operation: Schema = {
        "operationId": "getMetrics",
        "summary": "Prometheus metrics of this process",
        "tags": ["meta"],
        "responses": {"200": {"description": "Prometheus text exposition format 0.0.4.",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }
    if admin:
        operation["security"] = [{"adminToken": []}]
        operation["responses"]["403"] = _ref("responses", "Forbidden")
    return {"get": operation}


def _description(has_model: bool, agent_names: Sequence[str]) -> str:
    lines = [
        "LLM model and agents served over HTTP (JSON or server-sent events) and WebSocket.",
        "",
        "Errors are JSON `{\"error\", \"code\"}`; a wrong method is a 405 (`method_not_allowed`) and "
        "an unknown path a 404 (`not_found`).",
        "",
        "WebSocket endpoints (not HTTP operations, so not listed under paths):",
    ]
    if has_model:
        lines.append("- `/model/ws`")
    if agent_names:
        lines.append("- `/agent/{name}/ws` with name one of: " + ", ".join(f"`{n}`" for n in agent_names))
    if not has_model and not agent_names:
        lines.append("- none (no model and no agents are configured)")
    lines += [
        "",
        "Client to server: `{\"prompt\", \"user_id\"?}` per prompt (run one at a time, in order), and "
        "`{\"type\": \"cancel\"}` to stop the running one. Server to client: "
        "`{\"type\": \"chunk\", \"content\"}`, `{\"type\": \"step\", \"step\"}` (agents), "
        "`{\"type\": \"complete\", \"result\"}`, `{\"type\": \"cancelled\"}`, and errors "
        "`{\"error\", \"code\", \"retry_after\"?}` after which the connection stays open.",
        "",
        "`GET /playground` is a page to try all of this in a browser.",
    ]
    return "\n".join(lines)


def build_openapi(
    app_name: str,
    version: str,
    has_model: bool,
    agent_names: Sequence[str],
    has_limiter: bool,
    admin_token: bool,
    *,
    server_url: str | None = None,
    operations: Sequence[tuple[str, str]] = (),
    api_keys: str | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an app so configured (``server_url``: where it is mounted;
    ``api_keys``: ``"optional"`` or ``"required"`` when a key store is configured).

    Its paths are ``operations``, the ``(path, operationId)`` of the HTTP operations the app
    serves (``routes.operations`` of its routes; the app's context holds them), each built by
    the builder of its ``operationId``. This module reads no route table: the table imports the
    handlers, and ``GET /openapi.json``'s handler imports this module.
    """
    agent_names = sorted(agent_names)
    name = {"name": "name", "in": "path", "required": True, "description": "The agent's name.",
            "schema": {"type": "string", "enum": agent_names}}

    def prompt(operation_id: str, stream: bool, agent: bool) -> Schema:
        summary = ("Run an agent" if agent else "Ask the model") + \
            (" (streamed; SSE with Accept: text/event-stream)" if stream else "")
        post = _prompt_operation(summary, "AgentResult" if agent else "ModelResult", stream=stream, agent=agent,
                                 has_limiter=has_limiter, operation_id=operation_id)
        return {"parameters": [name], "post": post} if agent else {"post": post}

    builders: dict[str, Callable[[], Schema]] = {
        "getRoot": lambda: _get("Greeting, start time, model and agents",
                                _json(_ref("schemas", "Root"), "About the app."), "getRoot", "meta"),
        "getHealth": lambda: _get("Liveness", _json(_ref("schemas", "Health"), "The app is up."), "getHealth",
                                  "meta"),
        "validateUser": lambda: {"post": {
            "operationId": "validateUser",
            "summary": "Run the configured user validator on a user_id",
            "tags": ["meta"],
            "requestBody": {"required": True,
                            "content": {JSON: {"schema": _ref("schemas", "ValidateUserRequest")}}},
            "responses": {
                "200": _json(_ref("schemas", "ValidateUserResult"), "Whether the user_id is valid."),
                "400": _ref("responses", "BadRequest"),
                "413": _ref("responses", "PayloadTooLarge"),
            },
        }},
        "getRateLimitStats": lambda: _stats_operation("Global rate-limit figures", "LimiterStats",
                                                      "getRateLimitStats", has_limiter, admin_token),
        "getUserRateLimitStats": lambda: _stats_operation(
            "One user's usage, remaining and reset times", "UserStats", "getUserRateLimitStats",
            has_limiter, admin_token,
            [{"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}}]),
        "getMetrics": lambda: _metrics_operation(admin_token),
        "getPlayground": lambda: _get("A page to try the model and agents in a browser",
                                      {"description": "A self-contained HTML page.",
                                       "content": {"text/html": {"schema": {"type": "string"}}}},
                                      "getPlayground", "meta"),
        "getFavicon": lambda: _get("The site's icon (browsers ask for it)",
                                   {"description": "A 16x16 icon.",
                                    "content": {"image/x-icon": {"schema": {"type": "string", "format": "binary"}}}},
                                   "getFavicon", "meta"),
        "getOpenAPI": lambda: _get("This document", _json({"type": "object"}, "The OpenAPI 3.1 document."),
                                   "getOpenAPI", "meta"),
        "askModel": lambda: prompt("askModel", stream=False, agent=False),
        "askModelStream": lambda: prompt("askModelStream", stream=True, agent=False),
        "listAgents": lambda: _get("Agents and their tools", _json(_ref("schemas", "AgentList"), "The agents."),
                                   "listAgents", "agents"),
        "runAgent": lambda: prompt("runAgent", stream=False, agent=True),
        "runAgentStream": lambda: prompt("runAgentStream", stream=True, agent=True),
        "getDocs": lambda: _get("API docs of this document (Swagger UI, served offline)",
                                {"description": "An HTML page.",
                                 "content": {"text/html": {"schema": {"type": "string"}}}},
                                "getDocs", "meta"),
        "getStaticFile": lambda: _get(
            "A script or style sheet the pages load (shipped with the package)",
            {"description": "The file.",
             "content": {"application/javascript": {"schema": {"type": "string"}},
                         "text/css": {"schema": {"type": "string"}}}},
            "getStaticFile", "meta", errors={"404": _ref("responses", "NotFound")},
            parameters=[{"name": "name", "in": "path", "required": True,
                         "schema": {"type": "string", "enum": _static_names()}}]),
    }
    for front in (v1_operations, responses_operations, anthropic_operations):
        builders.update(front(_rate_headers() if has_limiter else None,
                              _ref("headers", "Retry-After") if has_limiter else None))
    builders.update(key_operations())
    paths = {path: builders[operation]() for path, operation in operations}
    components: dict[str, Any] = {"schemas": {**_schemas(has_limiter), **v1_schemas(), **responses_schemas(),
                                              **anthropic_schemas()},
                                  "responses": _responses(has_limiter)}
    if has_limiter:
        components["headers"] = _headers()
    if admin_token:
        components["securitySchemes"] = {"adminToken": {
            "type": "http", "scheme": "bearer", "description": "The server's --admin-token."}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": app_name, "version": version, "description": _description(has_model, agent_names)},
        "paths": dict(sorted(paths.items())),
        "components": components,
    }
    if server_url is not None:
        doc["servers"] = [{"url": server_url or "/"}]
    if api_keys is not None:
        add_key_docs(doc, required=api_keys == "required")
    return doc
