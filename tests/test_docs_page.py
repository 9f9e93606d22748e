"""``GET /docs``: Swagger UI over ``/openapi.json``, every file served by the server itself."""
from __future__ import annotations

import urllib.parse

import pytest

from monoai_tornado import DemoBackend
from monoai_tornado.agents import default_agents
from tests.support.http import AppUrl, Fetch
from tests.support.browser import BROWSER, bounded, browser_page, no_page_errors


@pytest.fixture
def docs_url(app_url: AppUrl) -> str:
    """The demo app and agents, served; its base URL."""
    backend = DemoBackend(delay=0)
    return app_url("Docs Test", model=backend, agents=default_agents(backend))


async def test_static_files_are_only_the_shipped_ones(docs_url: str, fetch: Fetch) -> None:
    base = docs_url
    script = await fetch(f"{base}/static/vendor/swagger-ui-bundle.js")
    assert script.code == 200
    assert script.headers["Content-Type"].startswith("application/javascript")
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    css = await fetch(f"{base}/static/vendor/swagger-ui.css")
    assert css.code == 200 and css.headers["Content-Type"].startswith("text/css")
    for name in ["vendor/LICENSE.marked", "../app.py", "vendor/../../app.py", "nope.js", "playground.html"]:
        answer = await fetch(f"{base}/static/{urllib.parse.quote(name, safe='/')}")
        assert answer.code == 404, name
        assert answer.headers["Content-Type"].startswith("application/json"), name


async def test_docs_page_names_its_files_under_the_mount_prefix(docs_url: str, fetch: Fetch) -> None:
    base = docs_url
    page = await fetch(f"{base}/docs")
    assert page.code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    body = page.body.decode()
    assert 'data-openapi-url="/openapi.json"' in body
    assert 'src="/static/vendor/swagger-ui-bundle.js"' in body


@BROWSER
@bounded(60)
async def test_docs_lists_the_endpoints_with_no_request_leaving_the_machine(docs_url: str) -> None:
    base = docs_url
    requested: list[str] = []
    async with browser_page("docs") as (page, seen):
        page.on("request", lambda request: requested.append(request.url))
        await page.goto(f"{base}/docs")
        await page.wait_for_selector(".opblock-summary-path")
        paths = await page.eval_on_selector_all(
            ".opblock-summary-path", "nodes => nodes.map(n => n.getAttribute('data-path'))")
        assert {"/model", "/model/stream", "/health", "/validate-user"} <= set(paths), paths
        title = await page.text_content(".information-container .title")
        assert title is not None and "Docs Test" in title
        no_page_errors(seen)
    hosts = {urllib.parse.urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, requested
