"""CORS on every answer, preflight on every endpoint, and mounting under a prefix."""
from __future__ import annotations

import pytest
import tornado.httpserver
import tornado.web

from tests.support.http import json_of

ENDPOINTS = ["/", "/health", "/model", "/model/stream", "/validate-user", "/rate-limit/stats",
             "/rate-limit/stats/someone"]


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_preflight_on_every_endpoint(url, fetch, path):
    response = await fetch(url + path, "OPTIONS", headers={
        "Origin": "https://example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    methods = response.headers["Access-Control-Allow-Methods"]
    expected = "POST" if path in ("/model", "/model/stream", "/validate-user") else "GET"
    assert expected in methods
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()


async def test_every_answer_carries_cors_even_errors(url, fetch):
    for response in [await fetch(url + "/model", "POST", {"prompt": "x"}),
                     await fetch(url + "/model", "POST", b"{"),
                     await fetch(url + "/missing")]:
        assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_cross_origin_answers_expose_the_rate_limit_headers(url, fetch):
    cross = await fetch(url + "/model", "POST", {"prompt": "x"}, headers={"Origin": "https://app.example"})
    exposed = {name.strip().lower() for name in cross.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ratelimit", "x-ratelimit-remaining-requests", "retry-after"} <= exposed
    # A request without Origin is not a CORS request: nothing to expose, one header less.
    plain = await fetch(url + "/model", "POST", {"prompt": "x"})
    assert "Access-Control-Expose-Headers" not in plain.headers


async def test_restricted_origins(app_url, fetch):
    url = app_url(cors_origins=["https://good.example"])
    good = await fetch(url + "/health", headers={"Origin": "https://good.example"})
    assert good.headers["Access-Control-Allow-Origin"] == "https://good.example"
    assert "Origin" in good.headers["Vary"]
    bad = await fetch(url + "/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers


class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write({"hello": "from the host app"})


async def test_mounted_under_a_prefix_in_a_host_app(make_app, serve, fetch):
    ai = make_app("Embedded")
    host_app = tornado.web.Application([(r"/hello", Hello), *ai.handlers("/ai")])
    url = serve(tornado.httpserver.HTTPServer(host_app))
    assert json_of(await fetch(url + "/hello")) == {"hello": "from the host app"}
    assert json_of(await fetch(url + "/ai/health")) == {"status": "ok", "app": "Embedded"}
    result = json_of(await fetch(url + "/ai/model", "POST", {"prompt": "embedded"}))
    assert "embedded" in result["response"]
    assert (await fetch(url + "/model", "POST", {"prompt": "x"})).code == 404
