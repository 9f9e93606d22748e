"""Serve an app with ``/playground`` and ``/openapi.json``, whether or not ``app.py`` registers them yet."""
from __future__ import annotations

import re
from typing import Any

import tornado.httpserver
import tornado.web

from monoai_tornado import Application
from monoai_tornado.handlers.base import NotFoundHandler
from monoai_tornado.handlers.pages import OpenAPIHandler, PlaygroundHandler


def page_specs(app: Application, prefix: str = "") -> list[tornado.web.URLSpec]:
    """``app.handlers(prefix)`` plus the two page routes when they are not among them."""
    specs = app.handlers(prefix)
    served = {spec.handler_class for spec in specs}
    p = re.escape(prefix.rstrip("/"))
    ctx = {"context": app.context}
    if PlaygroundHandler not in served:
        specs.append(tornado.web.url(rf"{p}/playground", PlaygroundHandler, ctx))
    if OpenAPIHandler not in served:
        specs.append(tornado.web.url(rf"{p}/openapi.json", OpenAPIHandler, ctx))
    return specs


def with_pages(app: Application, prefix: str = "", **settings: Any) -> tornado.httpserver.HTTPServer:
    """An ``HTTPServer`` like ``app.http_server()``, mounted under ``prefix``, with the page routes."""
    settings.setdefault("default_handler_class", NotFoundHandler)
    settings.setdefault("default_handler_args", {"context": app.context})
    settings.setdefault("websocket_ping_interval", app.websocket_ping_interval)
    web_app = tornado.web.Application(page_specs(app, prefix), **settings)
    return tornado.httpserver.HTTPServer(
        web_app,
        max_body_size=max(app.context.max_body_size * 4, 16 * 1024 * 1024),
        idle_connection_timeout=3600,
        body_timeout=60,
    )
