"""What API keys add to ``/openapi.json``: the bearer scheme, the 401s of prompt routes, and
the operations of ``/admin/keys``."""
from __future__ import annotations

from typing import Any, Callable

Schema = dict[str, Any]
JSON = "application/json"

_LIMITS: Schema = {"type": "array", "items": {"type": "string", "examples": ["5/minute"]}}
_WHEN: Schema = {"type": ["string", "null"], "format": "date-time"}


def _error(codes: list[str], description: str) -> Schema:
    schema = {"allOf": [{"$ref": "#/components/schemas/Error"},
                        {"properties": {"code": {"enum": codes}}}]}
    return {"description": description, "content": {JSON: {"schema": schema}},
            "headers": {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}}}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _schemas() -> dict[str, Schema]:
    public = {"id": {"type": "string", "pattern": "^key_"}, "user": {"type": "string"},
              "name": {"type": ["string", "null"]}, "prefix": {"type": "string", "pattern": "^sk-mt-"},
              "created_at": {"type": "string", "format": "date-time"}, "expires_at": _WHEN,
              "revoked": {"type": "boolean"}, "limits": _LIMITS, "token_limits": _LIMITS, "spend_limits": _LIMITS,
              "models": {"type": "array", "items": {"type": "string", "minLength": 1},
                         "description": "The models the key may use; empty: every one."}}
    created = {**{k: v for k, v in public.items() if k != "revoked"},
               "key": {"type": "string", "pattern": "^sk-mt-", "description": "Shown this once; only its hash is kept."}}
    return {
        "ApiKey": {"type": "object", "required": list(public), "properties": public},
        "ApiKeyList": {"type": "object", "required": ["keys"],
                       "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/ApiKey"}}}},
        "NewApiKey": {"type": "object", "required": list(created), "properties": created},
        "NewApiKeyRequest": {"type": "object", "required": ["user"], "properties": {
            "user": {"type": "string", "minLength": 1}, "name": {"type": "string"}, "limits": _LIMITS,
            "token_limits": _LIMITS, "spend_limits": _LIMITS, "models": public["models"], "expires_in": {"type": "number", "exclusiveMinimum": 0,
                                                    "description": "Seconds."}}},
        "RevokedApiKey": {"type": "object", "required": ["id", "revoked"],
                          "properties": {"id": {"type": "string"}, "revoked": {"const": True}}},
    }


def key_operations() -> dict[str, Callable[[], Schema]]:
    """The builders of ``/admin/keys`` (``createApiKey``, with ``listApiKeys``) and ``/admin/keys/{key_id}`` (``revokeApiKey``)."""
    guarded = {"security": [{"adminToken": []}], "tags": ["api keys"]}
    forbidden = {"$ref": "#/components/responses/Forbidden"}
    return {
        "createApiKey": lambda: {
            "post": {**guarded, "operationId": "createApiKey", "summary": "Make an API key (shown once)",
                     "requestBody": {"required": True, "content": {JSON: {"schema": {
                         "$ref": "#/components/schemas/NewApiKeyRequest"}}}},
                     "responses": {"201": _json({"$ref": "#/components/schemas/NewApiKey"}, "The new key."),
                                   "400": {"$ref": "#/components/responses/BadRequest"}, "403": forbidden}},
            "get": {**guarded, "operationId": "listApiKeys", "summary": "Every API key, without secrets",
                    "responses": {"200": _json({"$ref": "#/components/schemas/ApiKeyList"}, "The keys."),
                                  "403": forbidden}},
        },
        "revokeApiKey": lambda: {
            "parameters": [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "delete": {**guarded, "operationId": "revokeApiKey", "summary": "Revoke an API key",
                       "responses": {"200": _json({"$ref": "#/components/schemas/RevokedApiKey"}, "Revoked."),
                                     "403": forbidden, "404": {"$ref": "#/components/responses/NotFound"}}},
        },
    }


def add_key_docs(doc: Schema, *, required: bool) -> None:
    """Document API keys in an OpenAPI document built by :func:`monoai_tornado.openapi.build_openapi`
    (whose paths include ``/admin/keys`` from the route table)."""
    components = doc["components"]
    components.setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http", "scheme": "bearer", "description": "An API key (sk-mt-...); on WebSocket, or the "
        "subprotocols 'monoai' and 'bearer.KEY'."}
    components.setdefault("securitySchemes", {}).setdefault("adminToken", {
        "type": "http", "scheme": "bearer", "description": "The server's --admin-token."})
    components["schemas"].update(_schemas())
    components["responses"]["Unauthorized"] = _error(
        ["invalid_api_key", "missing_api_key"] if required else ["invalid_api_key"],
        "The API key is wrong, revoked, expired or malformed" + (", or missing." if required else "."))
    for path, item in doc["paths"].items():
        if path.startswith(("/model", "/agent/")) and "post" in item:
            operation = item["post"]
            operation["responses"] = dict(sorted({**operation["responses"],
                                                  "401": {"$ref": "#/components/responses/Unauthorized"}}.items()))
            operation["security"] = [{"apiKey": []}] if required else [{"apiKey": []}, {}]
            operation["responses"].setdefault("403", _json({"$ref": "#/components/schemas/Error"},
                                                           "The key may not use the model (model_not_allowed)."))
    agents = doc["paths"].get("/agents", {}).get("get")
    if agents is not None:
        agents["responses"].setdefault("401", {"$ref": "#/components/responses/Unauthorized"})
    if "OpenAIError" in components["schemas"]:
        _document_openai_routes(doc, required)


def _document_openai_routes(doc: Schema, required: bool) -> None:
    """401 (a wrong or missing key) and 403 (``model_not_allowed``) on the OpenAI-shaped routes."""
    shape = {"$ref": "#/components/schemas/OpenAIError"}
    answers = {"401": _json(shape, "The API key is wrong, revoked, expired or malformed (invalid_api_key)"
                            + (", or missing (missing_api_key)." if required else ".")),
               "403": _json(shape, "The key may not use the model (model_not_allowed).")}
    for path, method in (("/v1/chat/completions", "post"), ("/v1/responses", "post"), ("/v1/models", "get")):
        operation = doc["paths"].get(path, {}).get(method)
        if operation is None:
            continue
        wanted = answers if method == "post" else {"401": answers["401"]}
        operation["responses"] = dict(sorted({**wanted, **operation["responses"]}.items()))
        operation["security"] = [{"apiKey": []}] if required else [{"apiKey": []}, {}]
