"""``GET /playground``: one self-contained page, a strict CSP, nothing loaded from elsewhere."""
from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

import pytest

from monoai_tornado.handlers.base import EXPOSED_HEADERS
from monoai_tornado.handlers.pages import playground_page
from tests.support.http import json_of

STABLE_IDS = ["target", "transport", "user-id", "api-key", "system", "max-tokens", "prompt", "send", "stop",
              "new-chat", "status", "prompt-error", "conversation", "limits", "iterations", "headers"]


class _Collector(HTMLParser):
    """Every attribute that loads or links something, every id, and the inline blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []
        self.ids: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        for name, value in attrs:
            if name in ("src", "href", "action", "formaction", "srcset", "poster", "data", "manifest"):
                self.links.append((tag, name, value or ""))
            if name == "id" and value:
                self.ids.append(value)


def _parse(body: bytes) -> _Collector:
    collector = _Collector()
    collector.feed(body.decode("utf-8"))
    return collector


def _csp(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


@pytest.fixture
def url(app_url):
    return app_url("Page", pages=True)


async def test_the_page_is_html_with_its_controls(url, fetch):
    response = await fetch(url + "/playground")
    assert response.code == 200
    assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
    page = _parse(response.body)
    assert set(STABLE_IDS) <= set(page.ids)
    assert len(page.ids) == len(set(page.ids)), "ids must be unique"
    assert response.body == playground_page().body


async def test_strict_content_security_policy(url, fetch):
    response = await fetch(url + "/playground")
    csp = _csp(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"] == ["'none'"]
    assert "'self'" in csp["connect-src"]
    host = url.split("//", 1)[1]
    assert set(csp["connect-src"]) == {"'self'", f"ws://{host}", f"wss://{host}"}
    # No 'unsafe-inline' / 'unsafe-eval': exactly the page's own inline blocks, by hash, and
    # scripts from this server (the Markdown lexer shipped in the package).
    text = response.body.decode()
    for directive, tag, own in (("script-src", "script", {"'self'"}), ("style-src", "style", set())):
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
        assert blocks, tag
        expected = {"'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
                    for b in blocks}
        assert set(csp[directive]) == expected | own
    assert csp["require-trusted-types-for"] == ["'script'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_no_external_urls(url, fetch):
    response = await fetch(url + "/playground")
    page = _parse(response.body)
    for tag, attribute, value in page.links:
        assert not re.match(r"^\s*(https?:)?//", value, re.IGNORECASE), (tag, attribute, value)
        assert not value.lower().startswith("javascript:"), (tag, attribute, value)
    # Script files come from this server's package data only (relative to the page), and load.
    sources = [attrs["src"] for tag, attrs in page.tags if tag == "script" and "src" in attrs]
    assert sources == ["static/vendor/marked.umd.js"]
    for source in sources:
        script = await fetch(f"{url}/{source}")
        assert script.code == 200 and script.headers["Content-Type"].startswith("application/javascript")
    assert not [attrs for tag, attrs in page.tags if tag == "link" and attrs.get("rel") == "stylesheet"]
    text = response.body.decode()
    assert not re.search(r"https?://", text), "the page must not name any other host"
    assert "@import" not in text and "url(" not in text


def test_the_page_never_writes_html_from_data():
    text = playground_page().body.decode()
    script = re.search(r"<script>(.*?)</script>", text, re.DOTALL).group(1)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


def test_the_page_is_read_once():
    assert playground_page() is playground_page()


async def test_a_hostile_host_header_is_not_copied_into_the_policy(url, fetch):
    # (Tornado itself refuses a Host with spaces; these get through to the handler.)
    for host in ("evil.example;script-src", "evil'x", "x;connect-src"):
        response = await fetch(url + "/playground", headers={"Host": host})
        assert response.code == 200
        csp = _csp(response.headers["Content-Security-Policy"])
        assert csp["connect-src"] == ["'self'"]
        assert "evil" not in response.headers["Content-Security-Policy"]
        assert csp["script-src"][0] == "'self'"
        assert all(source.startswith("'sha256-") for source in csp["script-src"][1:])


async def test_the_page_works_under_a_prefix(app_url, fetch):
    url = app_url("P", pages="/ai")
    response = await fetch(url + "/ai/playground")
    assert response.code == 200 and b"<title>" in response.body
    # The page computes its API base from its own path: {prefix}/playground -> {prefix}/.
    root = await fetch(url + "/ai/")
    assert json_of(root)["msg"] == "App P successfully started"
    assert (await fetch(url + "/playground")).code == 404


async def test_errors_stay_json(url, fetch):
    response = await fetch(url + "/playground", "POST", {"prompt": "x"})
    assert response.code == 405
    assert response.headers["Content-Type"].startswith("application/json")
    assert json_of(response)["code"] == "method_not_allowed"
    assert "Content-Security-Policy" not in response.headers


async def test_rate_limit_headers_are_readable_by_the_page(url, fetch):
    # The SSE transport reads them with fetch(); the browser hides them unless exposed.
    exposed = {name.strip().lower() for name in EXPOSED_HEADERS.split(",")}
    for name in ("retry-after", "ratelimit", "ratelimit-policy", "x-ratelimit-remaining-requests",
                 "x-ratelimit-remaining-tokens"):
        assert name in exposed
    page_text = playground_page().body.decode().lower()
    for name in exposed:
        assert f'"{name}"' in page_text, f"the page does not show {name}"
