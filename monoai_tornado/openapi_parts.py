"""The pieces every OpenAPI builder uses (openapi.py, openapi_v1.py and any dialect's module): the
schema type, media types, component references and small schema constructors. It imports
nothing of the package, so a dialect's schema module and openapi.py can both import it."""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["ANY", "COUNT", "INTEGER", "JSON", "SSE", "STRING", "Schema", "json_response", "obj", "ref", "sse_event"]

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
