"""The one route table: every endpoint the server has, as a record.

``Application.handlers(prefix)`` (Tornado's URL specs), the endpoint list of ``GET /`` and of
the start banner, and the paths of ``/openapi.json`` all derive from :data:`ROUTES`, so a new
endpoint is one record here (and, when it is an HTTP operation, one builder in
:mod:`monoai_tornado.openapi`).

>>> [f"{r.methods[0]} {r.path}" for r in routes_for(has_model=True, has_agents=False) if r.serves == "model"]
['POST /model', 'POST /model/stream', 'WS /model/ws']
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

import tornado.httputil
import tornado.routing
import tornado.web

from .context import ServerContext
from .handlers.anthropic_front import CountTokensHandler, MessagesHandler
from .handlers.admin import AdminKeyHandler, AdminKeysHandler
from .handlers.favicon import FaviconHandler
from .handlers.http import PromptHandler
from .handlers.meta import (AgentsHandler, HealthHandler, MetricsHandler, RootHandler, StatsHandler,
                            UserStatsHandler, ValidateUserHandler)
from .handlers.openai_front import ChatCompletionsHandler, ModelsHandler
from .handlers.responses import ResponseHandler, ResponsesHandler
from .handlers.responses_ws import ResponsesSocket
from .handlers.pages import DocsHandler, OpenAPIHandler, PlaygroundHandler, StaticAssetHandler
from .handlers.websocket import PromptSocket

__all__ = ["ROUTES", "Route", "routes_for", "url_specs", "endpoint_lines", "endpoint_names", "operations"]

#: Path parameters: their name in a path template, and the handler argument they fill.
PATH_PARAMETERS = {"name": "agent_name", "user_id": "user_id", "key_id": "key_id", "response_id": "response_id"}
#: What a path parameter matches unless its route says otherwise.
SEGMENT = "[^/]+"


@dataclass(frozen=True)
class Route:
    """One endpoint.

    ``path`` is a template (``/agent/{name}``); ``methods`` the HTTP methods it answers, or
    ``("WS",)`` for a WebSocket; ``operation`` its OpenAPI ``operationId`` (None: not an HTTP
    operation of the document); ``serves`` says when it exists (always, with a model, with
    agents, with either: ``prompts``); ``options`` are handler arguments beside the context; ``note`` shows in the banner;
    ``parameters`` give a path parameter its own handler argument and regex; ``listed`` False
    keeps a route out of the banner and ``GET /``'s list (the pages' files).
    """

    path: str
    methods: tuple[str, ...]
    handler: type[tornado.web.RequestHandler]
    operation: str | None = None
    serves: Literal["always", "model", "agents", "prompts", "keys"] = "always"
    options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    parameters: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    listed: bool = True

    def pattern(self, prefix: str) -> str:
        """The URL regex of this route under ``prefix`` (normalised, maybe empty)."""
        if self.path == "/":
            return rf"{re.escape(prefix)}/?" if prefix else "/"
        parts = re.split(r"\{(\w+)\}", self.path)
        regex = [re.escape(prefix)]
        for i, part in enumerate(parts):
            if i % 2 == 0:
                regex.append(re.escape(part))
            else:
                argument, matches = self.parameters.get(part, (PATH_PARAMETERS[part], SEGMENT))
                regex.append(f"(?P<{argument}>{matches})")
        return "".join(regex)

    @property
    def prompt(self) -> bool:
        """Whether prompts run here (the routes that take the traffic)."""
        return issubclass(self.handler, (PromptHandler, PromptSocket))


_STREAMING = {"streaming": True}

#: Every endpoint, in the order the banner lists them.
ROUTES: tuple[Route, ...] = (
    Route("/playground", ("GET",), PlaygroundHandler, "getPlayground", note="(try it in a browser)"),
    Route("/openapi.json", ("GET",), OpenAPIHandler, "getOpenAPI"),
    Route("/docs", ("GET",), DocsHandler, "getDocs", note="(API docs, Swagger UI)"),
    Route("/static/{name}", ("GET",), StaticAssetHandler, "getStaticFile",
          parameters={"name": ("name", r"[A-Za-z0-9_.\-/%]+")}, listed=False),  # %2F: "/" as clients quote it
    Route("/", ("GET",), RootHandler, "getRoot"),
    Route("/favicon.ico", ("GET",), FaviconHandler, "getFavicon", listed=False),
    Route("/health", ("GET",), HealthHandler, "getHealth"),
    Route("/metrics", ("GET",), MetricsHandler, "getMetrics"),
    Route("/validate-user", ("POST",), ValidateUserHandler, "validateUser"),
    Route("/rate-limit/stats", ("GET",), StatsHandler, "getRateLimitStats"),
    Route("/rate-limit/stats/{user_id}", ("GET",), UserStatsHandler, "getUserRateLimitStats"),
    Route("/model", ("POST",), PromptHandler, "askModel", "model"),
    Route("/model/stream", ("POST",), PromptHandler, "askModelStream", "model", _STREAMING),
    Route("/model/ws", ("WS",), PromptSocket, None, "model"),
    Route("/v1/chat/completions", ("POST",), ChatCompletionsHandler, "createChatCompletion", "prompts",
          note="(any OpenAI client: base URL /v1)"),
    Route("/v1/models", ("GET",), ModelsHandler, "listModelsV1", "prompts"),
    Route("/v1/responses", ("WS",), ResponsesSocket, None, "prompts", note="(Responses API WebSocket mode)"),
    Route("/v1/responses", ("POST",), ResponsesHandler, "createResponse", "prompts",
          note="(OpenAI Responses API: base URL /v1)"),
    Route("/v1/responses/{response_id}", ("GET", "DELETE"), ResponseHandler, "getResponse", "prompts"),
    Route("/v1/messages", ("POST",), MessagesHandler, "createMessage", "prompts",
          note="(any Anthropic client: base URL /)"),
    Route("/v1/messages/count_tokens", ("POST",), CountTokensHandler, "countMessageTokens", "prompts"),
    Route("/agents", ("GET",), AgentsHandler, "listAgents", "agents"),
    Route("/agent/{name}", ("POST",), PromptHandler, "runAgent", "agents"),
    Route("/agent/{name}/stream", ("POST",), PromptHandler, "runAgentStream", "agents", _STREAMING),
    Route("/agent/{name}/ws", ("WS",), PromptSocket, None, "agents"),
    Route("/admin/keys", ("POST", "GET"), AdminKeysHandler, "createApiKey", "keys", note="(API keys; --admin-token)"),
    Route("/admin/keys/{key_id}", ("DELETE",), AdminKeyHandler, "revokeApiKey", "keys"),
)


def routes_for(has_model: bool, has_agents: bool, routes: Iterable[Route] = ROUTES, *,
               has_keys: bool = False) -> list[Route]:
    """The routes an app so configured serves, in table order."""
    wanted = {"always": True, "model": has_model, "agents": has_agents, "prompts": has_model or has_agents,
              "keys": has_keys}
    return [route for route in routes if wanted[route.serves]]


def url_specs(routes: Iterable[Route], prefix: str, context: ServerContext) -> list[tornado.routing.URLSpec]:
    """Tornado URL specs for ``routes`` under ``prefix``; prompt routes first, since Tornado
    tries the patterns in order and they take the traffic."""
    prefix = prefix.rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    ordered = sorted(routes, key=lambda route: not route.prompt)
    http_paths = {route.path for route in ordered if route.methods != ("WS",)}
    specs = []
    for route in ordered:
        spec = tornado.web.url(route.pattern(prefix), route.handler, {"context": context, **route.options})
        if route.methods == ("WS",) and route.path in http_paths:  # one path, two handlers: by the handshake
            spec.matcher = _WebSocketOnly(route.pattern(prefix))
        specs.append(spec)
    return specs


class _WebSocketOnly(tornado.routing.PathMatches):
    """A path that also serves HTTP methods (``/v1/responses``) goes to its WebSocket handler
    only for a WebSocket handshake."""

    def match(self, request: tornado.httputil.HTTPServerRequest) -> dict[str, Any] | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return None
        return super().match(request)


def operations(routes: Iterable[Route]) -> tuple[tuple[str, str], ...]:
    """``(path, operationId)`` of the routes that are HTTP operations (the OpenAPI paths)."""
    return tuple((route.path, route.operation) for route in routes if route.operation is not None)


def endpoint_names(routes: Iterable[Route]) -> list[str]:
    """``"METHOD /path"`` per method of every route (``GET /``'s list)."""
    return [f"{method} {route.path}" for route in routes if route.listed for method in route.methods]


def endpoint_lines(routes: Iterable[Route], base: str, agent_names: Iterable[str]) -> list[str]:
    """Human readable lines of what is served at ``base`` (the start banner), agents by name."""
    ws_base = base.replace("http", "ws", 1)
    names = sorted(agent_names)
    lines: list[str] = []
    for route in routes:
        if not route.listed:
            continue
        paths = [route.path.replace("{name}", name) for name in names] if route.serves == "agents" and \
            "{name}" in route.path else [route.path]
        for method in route.methods:
            for path in paths:
                line = f"{method:<4} {ws_base if method == 'WS' else base}{path}"
                lines.append(f"{line}   {route.note}" if route.note else line)
    return lines
