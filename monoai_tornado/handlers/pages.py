"""``GET /playground`` (a page to try the server in a browser), ``GET /docs`` (Swagger UI),
``GET /openapi.json`` and the static files the pages load (``GET /static/...``).

The playground is one HTML file shipped as package data, with marked (the Markdown lexer) from
``static/vendor``. Its inline script and style are allowed by their SHA-256 hashes in a strict
Content-Security-Policy: nothing else runs, nothing loads from elsewhere, and Trusted Types
forbid HTML sinks such as ``innerHTML`` (answers are rendered from marked's tokens as DOM nodes).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import html
import importlib.resources
import re
from dataclasses import dataclass

from ..errors import NotFound
from ..openapi import build_openapi
from ..openapi_examples import add_examples
from ..static_files import ASSET_TYPES, static_asset, static_assets
from ..version import __version__
from .base import JsonHandler

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
#: What a Host header may contain to be named in ``connect-src`` (anything else is left out).
_SAFE_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


@dataclass(frozen=True)
class Page:
    """The page's bytes and the CSP hashes of its inline script and style blocks."""

    body: bytes
    script_hashes: tuple[str, ...]
    style_hashes: tuple[str, ...]


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


@functools.lru_cache(maxsize=1)
def playground_page() -> Page:
    """The playground, read from package data once."""
    body = importlib.resources.files("monoai_tornado").joinpath("static/playground.html").read_bytes()
    text = body.decode("utf-8")
    scripts = tuple(_sha256(m.group(2)) for m in _INLINE.finditer(text) if m.group(1) == "script")
    styles = tuple(_sha256(m.group(2)) for m in _INLINE.finditer(text) if m.group(1) == "style")
    return Page(body, scripts, styles)


def content_security_policy(page: Page, host: str | None) -> str:
    """Only the page's own inline code; connections only to its own origin (HTTP and WebSocket)."""
    connect = ["'self'"]
    if host and _SAFE_HOST.match(host):
        # 'self' covers ws:/wss: in CSP 3; older browsers need the WebSocket origins spelled out.
        connect += [f"ws://{host}", f"wss://{host}"]
    return "; ".join([
        "default-src 'none'",
        # Its own inline script (by hash) and the scripts shipped with the package (marked).
        "script-src 'self' " + " ".join(page.script_hashes),
        "style-src " + " ".join(page.style_hashes or ("'none'",)),
        "connect-src " + " ".join(connect),
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ])


class PlaygroundHandler(JsonHandler):
    """``GET /playground``: the page (errors stay JSON, as everywhere)."""

    endpoint = "playground"

    def get(self) -> None:
        page = playground_page()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", content_security_policy(page, self.request.host))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Cache-Control", "no-cache")
        self.finish(page.body)


class StaticAssetHandler(JsonHandler):
    """``GET /static/NAME``: a script or style sheet of the pages, from package data only."""

    endpoint = "static"

    def get(self, name: str) -> None:
        if name not in static_assets():
            raise NotFound(f"No static file {name!r}")
        self.set_header("Content-Type", ASSET_TYPES[name[name.rindex("."):]])
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "public, max-age=3600")
        self.finish(static_asset(name))


DOCS_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",  # Swagger UI sets style attributes on its elements
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])


def docs_page(title: str, prefix: str) -> str:
    """Swagger UI over ``{prefix}/openapi.json``, every file from this server."""
    base = html.escape(prefix, quote=True)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} - API docs</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="stylesheet" href="{base}/static/vendor/swagger-ui.css"></head>'
        f'<body><div id="swagger-ui" data-openapi-url="{base}/openapi.json"></div>'
        f'<script src="{base}/static/vendor/swagger-ui-bundle.js"></script>'
        f'<script src="{base}/static/docs.js"></script></body></html>\n'
    )


class DocsHandler(JsonHandler):
    """``GET /docs``: Swagger UI over ``/openapi.json``, as FastAPI users expect."""

    endpoint = "docs"

    def get(self) -> None:
        path = self.request.path
        prefix = path[: -len("/docs")] if path.endswith("/docs") else ""
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", DOCS_CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")
        self.finish(docs_page(f"{self.context.name}", prefix))


class OpenAPIHandler(JsonHandler):
    """``GET /openapi.json``: the OpenAPI 3.1 document of what this app serves.

    Paths in the document are relative to where the app is mounted, given as ``servers``.
    """

    endpoint = "openapi"

    def get(self) -> None:
        ctx = self.context
        path = self.request.path
        prefix = path[: -len("/openapi.json")] if path.endswith("/openapi.json") else ""
        doc = build_openapi(
            ctx.name,
            __version__,
            has_model=ctx.model is not None,
            agent_names=sorted(ctx.agents),
            has_limiter=ctx.limiter is not None,
            admin_token=ctx.admin_token is not None,
            server_url=prefix or "/",
            api_keys=None if ctx.keys is None else "required" if ctx.keys.require else "optional",
            operations=ctx.operations,
        )
        self.send_json(add_examples(doc, None if ctx.model is None else ctx.model.name, sorted(ctx.agents)))
