"""The pieces every OpenAPI builder uses (openapi.py, openapi_v1.py and any dialect's module): the
schema type, media types, component references and small schema constructors. It imports
nothing of the package, so a dialect's schema module and openapi.py can both import it."""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["ANY", "COUNT", "INTEGER", "JSON", "SSE", "STRING", "Schema", "json_post", "json_response", "obj",
           "rate_limited", "ref", "sse_event"]

Schema = dict[str, Any]

JSON = "application/json"
SSE = "text/event-stream"

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
ANY: Schema = {}


def ref(kind: str, name: str) -> Schema:
    """A reference to ``#/components/KIND/NAME``."""
    return {"$ref": f"#/components/{kind}/{name}"}


def json_response(schema: Schema, description: str, headers: dict[str, Any] | None = None) -> Schema:
    """A response whose body is JSON of ``schema``."""
    response: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def json_post(operation_id: str, tag: str, summary: str, request: Schema, answers: dict[str, Schema],
              description: str | None = None) -> Schema:
    """A path item whose ``post`` takes a JSON body of ``request``; its answers sorted by status."""
    operation: Schema = {"operationId": operation_id, "summary": summary}
    if description is not None:
        operation["description"] = description
    operation.update({"tags": [tag], "requestBody": {"required": True, "content": {JSON: {"schema": request}}},
                      "responses": dict(sorted(answers.items()))})
    return {"post": operation}


def rate_limited(ok: Schema, answers: dict[str, Schema], too_many: Schema,
                 rate_headers: dict[str, Schema] | None, retry_after: Schema | None) -> None:
    """With a limiter on (``rate_headers``): its headers on the ``ok`` answer, and ``too_many`` as
    the ``429`` answer with ``Retry-After`` too; both added in place."""
    if rate_headers is not None and retry_after is not None:
        ok["headers"] = rate_headers
        answers["429"] = {**too_many, "headers": {"Retry-After": retry_after, **rate_headers}}
        if "content" in too_many:  # a spend limit refuses an unpriced model, in the same error shape
            answers.setdefault("403", {"description": "The model has no prices and a spend limit applies "
                                       "(model_not_priced), or the key may not use it (model_not_allowed).",
                                       "content": too_many["content"]})


def obj(properties: dict[str, Schema], required: Sequence[str] | None = None, **extra: Any) -> Schema:
    """An object schema; every property is required unless ``required`` says otherwise."""
    return {"type": "object", "required": list(properties if required is None else required),
            "properties": properties, **extra}


def sse_event(description: str, data: str, names: Sequence[str] = ()) -> Schema:
    """The ``schema`` of a ``text/event-stream`` answer: one event, as OpenAPI 3.1 tools read it
    (schemathesis included; 3.2 names it ``itemSchema``): its ``data`` text, and its ``event``
    name when the stream names its events. ``data`` says where its JSON is described."""
    properties: dict[str, Schema] = {"data": {"type": "string", "description": data}}
    if names:
        properties["event"] = {"enum": list(names)}
    return obj(properties, ["data", "event"] if names else ["data"], description=description)
