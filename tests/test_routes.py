"""One route table: handlers, ``GET /``, the banner and the OpenAPI paths all derive from it."""
from __future__ import annotations

from monoai_tornado import DemoBackend
from monoai_tornado.agents import Agent
from monoai_tornado.keys import FileKeyStore
from monoai_tornado.routes import ROUTES, routes_for
from tests.support.http import json_of


def everything(tmp_path):
    """The ``make_app`` arguments of an app with every optional part: a model, an agent, keys."""
    model = DemoBackend(delay=0)
    return {"model": model, "agents": [Agent("helper", model)], "keys": FileKeyStore(tmp_path / "keys.json")}


async def test_every_route_is_served_and_listed_by_get_root(make_app, serve, fetch, tmp_path):
    app = make_app(**everything(tmp_path))
    url = serve(app)
    listed = json_of(await fetch(url + "/"))["endpoints"]
    assert listed == [f"{method} {route.path}" for route in ROUTES if route.listed for method in route.methods]
    for route in ROUTES:
        if route.methods == ("GET",) and route.listed:
            path = route.path.replace("{user_id}", "someone")
            assert (await fetch(url + path)).code == 200, path


async def test_openapi_paths_are_the_http_routes(app_url, fetch, tmp_path):
    url = app_url(**everything(tmp_path))
    doc = json_of(await fetch(url + "/openapi.json"))
    http_routes = {route.path for route in ROUTES if route.methods != ("WS",)}
    assert set(doc["paths"]) == http_routes
    for route in ROUTES:
        if route.operation is not None:
            operations = {op["operationId"] for op in doc["paths"][route.path].values() if isinstance(op, dict)
                          and "operationId" in op}
            # One operation per method, the route named by one of them.
            assert len(operations) == len(route.methods) and route.operation in operations


def test_model_and_agent_routes_exist_only_when_configured(make_app):
    assert all(route.serves == "always" for route in routes_for(has_model=False, has_agents=False))
    app = make_app()
    lines = app.endpoint_lines("http://h:1")
    assert "WS   ws://h:1/model/ws" in lines
    assert not any("/agent" in line for line in lines)
    patterns = [spec.regex.pattern for spec in app.handlers("/ai")]
    assert patterns[0] == "/ai/model$"  # prompt routes are tried first
    assert "/ai/?$" in patterns
