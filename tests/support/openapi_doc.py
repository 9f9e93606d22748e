"""Reading an OpenAPI document served at ``/openapi.json`` and checking live answers against it."""
from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from monoai_tornado import Application
from monoai_tornado.handlers.websocket import PromptSocket
from tests.support.http import json_of, parse_sse
from tests.support.pages_helpers import page_specs

JSON = "application/json"
SSE = "text/event-stream"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def json_pointer(*tokens: str) -> str:
    return "/" + "/".join(_escape(t) for t in tokens)


def _at(doc: dict[str, Any], pointer: str) -> Any:
    value: Any = doc
    for token in pointer.lstrip("/").split("/"):
        value = value[token.replace("~1", "/").replace("~0", "~")]
    return value


def _follow(doc: dict[str, Any], pointer: str) -> str:
    """``pointer``, or where its object's ``$ref`` leads (responses may be references)."""
    target = _at(doc, pointer)
    while isinstance(target, dict) and "$ref" in target:
        pointer = target["$ref"][1:]
        target = _at(doc, pointer)
    return pointer


class Documented:
    """The document and JSON Schema validators for the schemas at its pointers."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:openapi", resource)

    def validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": "urn:openapi#" + pointer}, registry=self.registry,
                                    format_checker=Draft202012Validator.FORMAT_CHECKER)

    def response(self, path: str, method: str, status: int) -> str:
        """Pointer to the documented response; fails when the status is not documented."""
        responses = self.doc["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method.upper()} {path} answered {status}, not documented"
        return _follow(self.doc, json_pointer("paths", path, method, "responses", str(status)))

    def check(self, path: str, method: str, response: Any) -> Any:
        """Validate a live answer (status, content type, body, headers) against the document."""
        pointer = self.response(path, method, response.code)
        documented = _at(self.doc, pointer)
        media = response.headers.get("Content-Type", "").split(";")[0].strip()
        assert media in documented.get("content", {}), f"{path} {response.code}: {media} not documented"
        body: Any
        if media == JSON:
            body = json.loads(response.body)
            errors = list(self.validator(pointer + json_pointer("content", JSON, "schema")).iter_errors(body))
            assert not errors, f"{method.upper()} {path} {response.code}: {errors[0].message} in {body}"
        elif media == SSE:
            body = parse_sse(response.body)
            events = _at(self.doc, pointer + json_pointer("content", SSE))["x-sse-events"]
            assert body, "no events"
            for name, data in body:
                assert name in events, f"undocumented event {name}"
                event_pointer = pointer + json_pointer("content", SSE, "x-sse-events", name)
                errors = list(self.validator(event_pointer).iter_errors(data))
                assert not errors, f"{path} event {name}: {errors[0].message}"
        else:
            body = response.body if media.startswith("image/") else response.body.decode()
        for name, header in documented.get("headers", {}).items():
            header = _at(self.doc, header["$ref"][1:]) if "$ref" in header else header
            value = response.headers.get(name)
            if header.get("required"):
                assert value is not None, f"{path} {response.code}: header {name} missing"
            if value is not None and header["schema"].get("type") == "integer":
                assert re.fullmatch(r"\d+", value), f"{name}: {value!r} is not an integer"
        return body


async def documented_at(fetch: Any, url: str) -> Documented:
    """The valid OpenAPI document ``url`` serves, ready to check answers against."""
    response = await fetch(url + "/openapi.json")
    assert response.code == 200 and response.headers["Content-Type"].startswith(JSON)
    doc = json_of(response)
    validate_spec(doc)
    return Documented(doc)


def _template(pattern: str) -> str:
    """A Tornado route pattern as an OpenAPI path template."""
    path = pattern.rstrip("$")
    path = re.sub(r"\(\?P<agent_name>[^)]*\)", "{name}", path)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", path)
    path = path.replace("/?", "/").replace("\\", "")
    return path if path == "/" else path.rstrip("/")


def served_http_paths(app: Application) -> set[str]:
    """The OpenAPI path templates of every HTTP route ``app`` serves (its WebSockets left out)."""
    return {_template(spec.regex.pattern) for spec in page_specs(app)
            if not issubclass(spec.handler_class, PromptSocket)}
