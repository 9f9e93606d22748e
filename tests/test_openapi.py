"""``GET /openapi.json``: a valid OpenAPI 3.1 document, checked against the live endpoints.

Every documented operation is called for real and its answer (status, body, headers) must be
one the document describes; error answers too. The document must list exactly the HTTP
routes the app serves.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

import pytest
from openapi_spec_validator import validate as validate_spec

from monoai_tornado import DemoBackend
from monoai_tornado.agents import default_agents
from monoai_tornado.backends.base import Backend, TextDelta
from monoai_tornado.openapi import build_openapi
from monoai_tornado.routes import operations, routes_for
from monoai_tornado.ratelimit import Limit, RateLimiter, StoreUnavailable
from tests.support.backends_for_tests import ScriptedBackend
from tests.support.http import json_of
from tests.support.openapi_doc import JSON, SSE, Documented, documented_at, json_pointer, served_http_paths
from tests.support.pages_helpers import with_pages

FROZEN_NOW = 1_700_000_030.0  # mid-minute: a window cannot roll over during a test


def _full(**kwargs: Any) -> dict[str, Any]:
    """The ``make_app`` arguments of the app with everything: the demo model and agents, generous limits."""
    backend = DemoBackend(delay=0)
    limiter = RateLimiter([Limit("request", 1000, "minute"), Limit("token", 10_000_000, "day")])
    return {"model": backend, "agents": default_agents(backend), "rate_limiter": limiter, **kwargs}


def _request_for(doc: dict[str, Any], path: str, method: str) -> tuple[str, Any]:
    """A valid request for a documented operation: concrete path and JSON body."""
    item = doc["paths"][path]
    operation = item[method]
    concrete = path
    for parameter in item.get("parameters", []) + operation.get("parameters", []):
        schema = parameter["schema"]
        value = schema["enum"][0] if "enum" in schema else "alice"
        concrete = concrete.replace("{" + parameter["name"] + "}", value)
    body = None
    if "requestBody" in operation:
        ref = operation["requestBody"]["content"][JSON]["schema"]["$ref"]
        body = {"prompt": "What is 2+3?", "user_id": "alice"} if ref.endswith("/PromptRequest") \
            else {"model": "monoai-demo", "messages": [{"role": "user", "content": "What is 2+3?"}],
                  "user": "alice"} if ref.endswith("/ChatCompletionRequest") \
            else {"model": "monoai-demo", "input": "What is 2+3?", "user": "alice"} \
            if ref.endswith("/ResponseCreateRequest") \
            else {"model": "monoai-demo", "max_tokens": 50, "metadata": {"user_id": "alice"},
                  "messages": [{"role": "user", "content": "What is 2+3?"}]} if ref.endswith("TokensRequest") \
            or ref.endswith("/MessagesRequest") else {"user_id": "alice"}
    return concrete, body


def _check_v1_stream(documented: Documented, response: Any) -> list[Any]:
    """Validate a streamed ``/v1/chat/completions`` answer: its ``data:`` lines, ``[DONE]`` last."""
    pointer = documented.response("/v1/chat/completions", "post", response.code)
    assert response.headers["Content-Type"].startswith(SSE)
    lines = [line[len("data: "):] for line in response.body.decode().split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    validator = documented.validator(pointer + json_pointer("content", SSE, "x-sse-data"))
    events = [json.loads(line) for line in lines[:-1]]
    for event in events:
        errors = list(validator.iter_errors(event))
        assert not errors, f"{errors[0].message} in {event}"
    return events


# --- the document itself ----------------------------------------------------------------------

@pytest.mark.parametrize("has_model", [True, False])
@pytest.mark.parametrize("agents", [[], ["assistant", "helper"]])
@pytest.mark.parametrize("has_limiter", [True, False])
@pytest.mark.parametrize("admin", [True, False])
def test_every_configuration_is_valid_openapi_31(has_model, agents, has_limiter, admin):
    doc = build_openapi("App", "1.2.3", has_model, agents, has_limiter, admin, server_url="/ai",
                        operations=operations(routes_for(has_model, bool(agents))))
    validate_spec(doc)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"] == {**doc["info"], "title": "App", "version": "1.2.3"}
    assert ("/model" in doc["paths"]) is has_model and ("/model/stream" in doc["paths"]) is has_model
    assert ("/agent/{name}" in doc["paths"]) is bool(agents) and ("/agents" in doc["paths"]) is bool(agents)
    prompt_paths = [p for p in doc["paths"] if p.startswith(("/model", "/agent/"))]
    for path in prompt_paths:
        responses = doc["paths"][path]["post"]["responses"]
        assert {"200", "400", "413", "502", "503", "504"} <= set(responses)
        assert ("429" in responses) is has_limiter
        assert (SSE in responses["200"]["content"]) is path.endswith("/stream")
    stats = doc["paths"]["/rate-limit/stats"]["get"]
    assert ("security" in stats) is admin and ("403" in stats["responses"]) is admin
    websockets = [w for w in ("/model/ws", "/agent/{name}/ws") if w in doc["info"]["description"]]
    assert websockets == (["/model/ws"] if has_model else []) + (["/agent/{name}/ws"] if agents else [])
    assert not any(p.endswith("/ws") for p in doc["paths"])


def test_prompt_request_schema():
    doc = Documented(build_openapi("A", "1", True, [], False, False, operations=operations(routes_for(True, False))))
    validator = doc.validator("/components/schemas/PromptRequest")
    assert validator.is_valid({"prompt": "hi"})
    assert validator.is_valid({"prompt": "hi", "user_id": 42, "extra": True})
    for bad in ({}, {"prompt": ""}, {"prompt": "   "}, {"prompt": 5}, {"prompt": "x", "user_id": [1]}, []):
        assert not validator.is_valid(bad), bad


# --- the document against the live app --------------------------------------------------------

async def test_documented_paths_are_exactly_the_served_ones(make_app, serve, fetch):
    for app in (make_app("Full", **_full()), make_app("Bare", model=None),
                make_app("M")):
        doc = (await documented_at(fetch, serve(with_pages(app)))).doc
        assert set(doc["paths"]) == served_http_paths(app), app.name


async def test_every_operation_answers_as_documented(make_app, serve, fetch):
    app = make_app("Full", **_full())
    url = serve(with_pages(app))
    documented = await documented_at(fetch, url)
    doc = documented.doc
    called = 0
    for path, item in doc["paths"].items():
        for method in ("get", "post"):
            if method not in item:
                continue
            concrete, body = _request_for(doc, path, method)
            if path == "/v1/responses/{response_id}":  # a response of alice's, made first
                made = json_of(await fetch(url + "/v1/responses", "POST", {"model": "monoai-demo", "input": "hi",
                                                                           "user": "alice"}))
                concrete = f"/v1/responses/{made['id']}?user=alice"
            response = await fetch(url + concrete, method.upper(), body)
            assert response.code == 200, (path, response.code, response.body[:300])
            documented.check(path, method, response)
            called += 1
            if path.endswith("/stream"):
                events = documented.check(path, method, await fetch(
                    url + concrete, "POST", body, headers={"Accept": SSE}))
                assert [name for name, _ in events][-1] == "complete"
            if path == "/v1/messages":
                events = documented.check(path, method, await fetch(url + concrete, "POST", {**body, "stream": True}))
                assert [name for name, _ in events][-1] == "message_stop"
            if path == "/v1/chat/completions":
                streamed = await fetch(url + concrete, "POST", {**body, "stream": True,
                                                                "stream_options": {"include_usage": True}})
                assert len(_check_v1_stream(documented, streamed)) > 3
    assert called == len(doc["paths"]) >= 12


async def test_rate_limit_headers_on_success_are_documented(app_url, fetch):
    url = app_url("Full", pages=True, **_full())
    documented = await documented_at(fetch, url)
    response = await fetch(url + "/model", "POST", {"prompt": "hi"})
    for name in documented.doc["paths"]["/model"]["post"]["responses"]["200"]["headers"]:
        assert name in response.headers, name


async def test_agent_enum_matches_the_configured_agents(make_app, serve, fetch):
    backend = DemoBackend(delay=0)
    agents = {**{a.name: a for a in default_agents(backend)}, "second": default_agents(backend)[0]}
    app = make_app("A", model=None, agents=agents)
    url = serve(with_pages(app))
    doc = (await documented_at(fetch, url)).doc
    for path in ("/agent/{name}", "/agent/{name}/stream"):
        (parameter,) = doc["paths"][path]["parameters"]
        assert parameter["in"] == "path" and parameter["required"] is True
        assert parameter["schema"]["enum"] == sorted(agents) == sorted(app.agents)
    root = json_of(await fetch(url + "/"))
    assert root["agents"] == doc["paths"]["/agent/{name}"]["parameters"][0]["schema"]["enum"]
    assert not any(path.startswith("/model") for path in doc["paths"])


async def test_model_paths_absent_without_a_model(app_url, fetch):
    url = app_url("Bare", model=None, pages=True)
    doc = (await documented_at(fetch, url)).doc
    assert not any(p.startswith(("/model", "/agent")) for p in doc["paths"])
    assert (await fetch(url + "/model", "POST", {"prompt": "x"})).code == 404
    assert "ModelResult" in doc["components"]["schemas"]  # harmless: shared components


async def test_servers_name_the_mount_point(app_url, fetch):
    url = app_url("P", pages="/ai")
    doc = (await documented_at(fetch, url + "/ai")).doc
    assert doc["servers"] == [{"url": "/ai"}]
    response = await fetch(url + "/ai" + "/model", "POST", {"prompt": "hi"})
    Documented(doc).check("/model", "post", response)
    root_doc = (await documented_at(fetch, app_url("R", model=None, pages=True))).doc
    assert root_doc["servers"] == [{"url": "/"}]


# --- error answers ----------------------------------------------------------------------------

async def test_bad_requests_are_documented(app_url, fetch):
    url = app_url("Full", pages=True, **_full())
    documented = await documented_at(fetch, url)
    cases = [
        ("/model", "/model", b"not json", "invalid_json"),
        ("/model", "/model", b"[1, 2]", "invalid_json"),
        ("/model/stream", "/model/stream", {"prompt": "   "}, "missing_prompt"),
        ("/agent/{name}", "/agent/assistant", {"user_id": "x"}, "missing_prompt"),
        ("/agent/{name}/stream", "/agent/assistant/stream", {"prompt": "x", "user_id": [1]}, "invalid_user_id"),
        ("/validate-user", "/validate-user", {}, "missing_user_id"),
        ("/validate-user", "/validate-user", b"{", "invalid_json"),
    ]
    for path, concrete, body, code in cases:
        response = await fetch(url + concrete, "POST", body)
        assert response.code == 400, (concrete, body)
        assert documented.check(path, "post", response)["code"] == code
        # Bad input refused before the stream starts is JSON even when events were asked for.
        if path.endswith("/stream"):
            sse = await fetch(url + concrete, "POST", body, headers={"Accept": SSE})
            assert documented.check(path, "post", sse)["code"] == code


async def test_unknown_agent_is_a_documented_404(app_url, fetch):
    url = app_url("Full", pages=True, **_full())
    documented = await documented_at(fetch, url)
    for path, concrete in (("/agent/{name}", "/agent/nobody"), ("/agent/{name}/stream", "/agent/nobody/stream")):
        response = await fetch(url + concrete, "POST", {"prompt": "hi"})
        assert response.code == 404
        assert documented.check(path, "post", response)["code"] == "not_found"


async def test_too_large_bodies_are_documented(app_url, fetch):
    url = app_url("Full", pages=True, **_full(max_body_size=1000))
    documented = await documented_at(fetch, url)
    big = {"prompt": "x" * 2000, "user_id": "y" * 10}
    for path, concrete in (("/model", "/model"), ("/model/stream", "/model/stream"),
                           ("/agent/{name}", "/agent/assistant"), ("/validate-user", "/validate-user")):
        response = await fetch(url + concrete, "POST", big)
        assert response.code == 413, concrete
        assert documented.check(path, "post", response)["code"] == "payload_too_large"


async def test_rate_limited_answers_are_documented(make_app, serve, fetch):
    limiter = RateLimiter([Limit("request", 1, "minute")], clock=lambda: FROZEN_NOW)
    backend = DemoBackend(delay=0)
    app = make_app("L", model=backend, agents=default_agents(backend), rate_limiter=limiter)
    url = serve(with_pages(app))
    documented = await documented_at(fetch, url)
    assert (await fetch(url + "/model", "POST", {"prompt": "first"})).code == 200
    expected_retry = 60 - int(FROZEN_NOW) % 60
    for path, concrete, headers in (("/model", "/model", {}), ("/model/stream", "/model/stream", {"Accept": SSE}),
                                    ("/agent/{name}", "/agent/assistant", {})):
        response = await fetch(url + concrete, "POST", {"prompt": "again"}, headers=headers)
        assert response.code == 429
        body = documented.check(path, "post", response)
        assert body["code"] == "rate_limited" and body["retry_after"] == expected_retry
        assert response.headers["Retry-After"] == str(expected_retry)
        assert response.headers["x-ratelimit-remaining-requests"] == "0"


async def test_admin_only_stats_are_documented(app_url, fetch):
    url = app_url("Full", pages=True, **_full(admin_token="s3cret"))
    documented = await documented_at(fetch, url)
    assert documented.doc["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"
    for path, concrete in (("/rate-limit/stats", "/rate-limit/stats"),
                           ("/rate-limit/stats/{user_id}", "/rate-limit/stats/alice"), ("/metrics", "/metrics")):
        refused = await fetch(url + concrete)
        assert refused.code == 403
        assert documented.check(path, "get", refused)["code"] == "forbidden"
        allowed = await fetch(url + concrete, headers={"Authorization": "Bearer s3cret"})
        assert allowed.code == 200
        documented.check(path, "get", allowed)


async def test_stats_without_a_limiter_are_documented(app_url, fetch):
    url = app_url("N", pages=True)
    documented = await documented_at(fetch, url)
    for path, concrete in (("/rate-limit/stats", "/rate-limit/stats"),
                           ("/rate-limit/stats/{user_id}", "/rate-limit/stats/bob")):
        body = documented.check(path, "get", await fetch(url + concrete))
        assert body == {"message": "Rate limiter not configured"}


class _Silent(Backend):
    """Answers nothing, then fails: exercises a backend error after a stream started."""

    provider, name = "test", "silent"

    async def stream(self, messages: Any, *, tools: Any = None) -> AsyncIterator[TextDelta]:
        yield TextDelta("partial ")
        raise ValueError("nonsense from upstream")


async def test_backend_failures_are_documented(app_url, fetch):
    for backend, status, code in ((ScriptedBackend(failure="error"), 502, "backend_error"),
                                  (ScriptedBackend(failure="timeout"), 504, "backend_timeout"),
                                  (_Silent(), 502, "backend_error")):
        url = app_url("F", model=backend, pages=True)
        documented = await documented_at(fetch, url)
        response = await fetch(url + "/model", "POST", {"prompt": "hi"})
        assert response.code == status
        assert documented.check("/model", "post", response)["code"] == code
        sse = await fetch(url + "/model/stream", "POST", {"prompt": "hi"}, headers={"Accept": SSE})
        if isinstance(backend, _Silent):  # failed after its first event: an error event, as in x-sse-events
            events = documented.check("/model/stream", "post", sse)
            assert events[-1] == ("error", {**events[-1][1], "code": code})
        else:  # failed before any event: its own status, as a JSON error
            assert sse.code == status and documented.check("/model/stream", "post", sse)["code"] == code


class _DownStore:
    """A store that cannot be reached."""

    async def admit(self, *args: Any) -> Any:
        raise StoreUnavailable("connection refused")

    async def settle(self, *args: Any) -> None:
        raise StoreUnavailable("connection refused")

    async def usage(self, *args: Any) -> Any:
        raise StoreUnavailable("connection refused")

    async def user_figures(self, *args: Any) -> Any:
        raise StoreUnavailable("connection refused")

    async def window_stats(self, *args: Any) -> Any:
        raise StoreUnavailable("connection refused")

    async def ping(self) -> None:
        raise StoreUnavailable("connection refused")

    async def aclose(self) -> None:
        pass


async def test_limiter_outage_is_a_documented_503(app_url, fetch):
    limiter = RateLimiter([Limit("request", 10, "minute")], store=_DownStore())
    url = app_url("D", rate_limiter=limiter, pages=True)
    documented = await documented_at(fetch, url)
    response = await fetch(url + "/model", "POST", {"prompt": "hi"})
    assert response.code == 503
    assert documented.check("/model", "post", response)["code"] == "limiter_unavailable"
    stats = await fetch(url + "/rate-limit/stats")
    assert stats.code == 503
    assert documented.check("/rate-limit/stats", "get", stats)["code"] == "limiter_unavailable"


async def test_wrong_method_is_an_error_object(app_url, fetch):
    # 405 is described in info.description rather than per operation; its body is an Error.
    url = app_url("Full", pages=True, **_full())
    documented = await documented_at(fetch, url)
    assert "405" in documented.doc["info"]["description"]
    for concrete, method in (("/model", "GET"), ("/openapi.json", "POST"), ("/health", "DELETE")):
        response = await fetch(url + concrete, method)
        assert response.code == 405, concrete
        errors = list(documented.validator("/components/schemas/Error").iter_errors(json_of(response)))
        assert not errors and json_of(response)["code"] == "method_not_allowed"


async def test_a_capped_answer_and_a_concurrency_refusal_are_documented(app_url, fetch):
    limiter = RateLimiter([Limit("token", 10_000, "day")], concurrency_limit=1)
    backend = ScriptedBackend(["slow "] * 40, delay=0.02)
    url = app_url("C", model=backend, rate_limiter=limiter, pages=True)
    documented = await documented_at(fetch, url)
    running = asyncio.ensure_future(fetch(url + "/model", "POST", {"prompt": "hi", "user_id": "u", "max_tokens": 30}))
    for _ in range(500):
        if backend.started:
            break
        await asyncio.sleep(0.01)
    refused = await fetch(url + "/model", "POST", {"prompt": "hi", "user_id": "u"})
    assert documented.check("/model", "post", refused)["code"] == "too_many_concurrent"
    assert documented.check("/model", "post", await running)["finish_reason"] == "length"


@pytest.mark.parametrize("path,schema,body,accepted", [
    *(("/model", "PromptRequest", {"prompt": "x", "user_id": user_id}, accepted)
      for user_id, accepted in [(None, True), (7, True), (1.5, False), (["a"], False)]),
    *(("/validate-user", "ValidateUserRequest", body, accepted)
      for body, accepted in [({"user_id": "u1"}, True), ({"user_id": 3}, True), ({"user_id": ""}, False),
                             ({"user_id": "  "}, False), ({"user_id": None}, False), ({}, False)]),
])
async def test_the_request_schemas_and_the_server_agree_on_user_id(app_url, fetch, path, schema, body, accepted):
    url = app_url()
    documented = (await documented_at(fetch, url)).validator(f"/components/schemas/{schema}").is_valid(body)
    answer = await fetch(url + path, "POST", body)
    assert documented is accepted and (answer.code == 200) is accepted
