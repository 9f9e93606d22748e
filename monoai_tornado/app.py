"""``Application``: the MonoAI-shaped entry point that wires model, agents and limiter into
Tornado handlers.

    from monoai_tornado import Application
    from monoai_tornado.backends.demo import DemoBackend

    app = Application("My App", model=DemoBackend())
    app.serve(port=8000)                      # or mount app.handlers("/ai") in your own app
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any, Iterable, Mapping, Sequence

import tornado.ioloop
import tornado.web

from .backends.base import Backend
from .context import DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_WS_MESSAGE_SIZE, ServerContext
from .deadlines import DeadlineHTTPServer, HTTPServerLike
from . import http1server
from .dialects.responses_store import MemoryResponseStore, ResponseStore
from .extras import require
from .handlers.base import NotFoundHandler, log_request
from .tornado_internals import TaskApplication
from .agents.agent import Agent
from .agents.base import NativeAgent
from .agents.monoai_adapter import adapt_agent
from .identity import IdentityResolver, UserValidator
from .keys import KeyRing
from .lifecycle import Lifecycle
from .money.ledger import UsageLedger
from .money.prices import Prices
from .pipeline import DEFAULT_MAX_TOKENS, Pipeline
from .targets import ModelTarget
from .ratelimit import Limiter, RateLimiter
from .routing import Gateway
from .routes import endpoint_lines, endpoint_names, operations, routes_for, url_specs
from .request_trace import Tracing
from .usage import TokenCounter, shared_counter

log = logging.getLogger("monoai_tornado")

#: The choices of ``Application(http_parser=...)`` and ``--http-parser``.
HTTP_PARSERS = ("auto", "httptools", "tornado")


def _is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``""`` and ``0.0.0.0`` are every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _tracing() -> Tracing:
    """OpenTelemetry's tracer (imported only here: without ``otel=True`` nothing of it is loaded)."""
    require("opentelemetry.sdk.trace", "otel", "OpenTelemetry tracing (--otel)")
    from .otel import OtelTracing

    return OtelTracing()


def _as_backend(model: Any) -> Backend:
    if isinstance(model, Backend):
        return model
    from .backends.monoai_adapter import adapt_model

    return adapt_model(model)


def _as_key_ring(keys: Any, require: bool) -> KeyRing | None:
    """A :class:`KeyRing` for a ring or a bare key store (None: no keys)."""
    if keys is None:
        if require:
            raise ValueError("require_api_key needs keys (a KeyRing or a key store)")
        return None
    ring = keys if isinstance(keys, KeyRing) else KeyRing(keys)
    ring.require = ring.require or require
    return ring


def _as_agents(agents: Iterable[Any] | Mapping[str, Any] | None) -> dict[str, NativeAgent]:
    """Our own agents as they are; MonoAI-style objects through the adapter."""
    if not agents:
        return {}
    if isinstance(agents, Mapping):
        return {name: adapt_agent(agent, name) for name, agent in agents.items()}
    adapted = [adapt_agent(agent) for agent in agents]
    return {agent.name: agent for agent in adapted}


class Application:
    """A served model and its agents, with the constructor of MonoAI's ``Application``.

    Args:
        name: shown by ``GET /`` and ``GET /health``.
        model: a :class:`~monoai_tornado.backends.base.Backend`, or a MonoAI-style object
            with ``ask()``; serves ``/model*`` when given.
        agents: agents (a list, or a dict by name); serves ``/agent/{name}*`` when given.
        rate_limiter: a :class:`~monoai_tornado.ratelimit.RateLimiter`, or None.
        user_validator: ``f(user_id) -> True | normalized str | False`` (sync or async).
        cors_origins: origins allowed by CORS and the WebSocket origin check (``"*"``: any).
        max_body_size / max_ws_message_size: bytes accepted per body or message.
        trusted_proxies: CIDRs whose ``X-Forwarded-For`` / ``X-Real-IP`` are believed.
        reject_invalid_users: 403 for a user_id the validator refuses (else limit by IP).
        admin_token: when set, the stats endpoints need ``Authorization: Bearer TOKEN``.
        gateway: several models and their deployments (:class:`~monoai_tornado.routing.Gateway`),
            served instead of ``model``; prompts choose one by ``model``.
        keys: a :class:`~monoai_tornado.keys.KeyRing` or a key store: requests may carry
            ``Authorization: Bearer sk-mt-...``; a key's user is their identity and its own
            limits replace the defaults. ``require_api_key``: refuse requests without one.
        idle_timeout / body_timeout: seconds a connection may idle or send its headers, and
            send its body, before it is closed.
        default_max_tokens: the completion cap of a run whose request names no ``max_tokens``.
        sse_header_hold: seconds an SSE answer's headers wait for its first event, so that a
            run failing before it answers its own status (not 200).
        prices: what the model costs (:class:`~monoai_tornado.money.Prices`): every usage then
            carries ``cost_usd``, and spend limits (``Limit("usd", ...)``) can hold it; agents
            running on the same backend are priced alike.
        usage_ledger: where every finished run is written (a
            :class:`~monoai_tornado.money.ledger.FileLedger` or ``RedisLedger``); closed by :meth:`aclose`.
        responses_store: where ``/v1/responses`` keeps responses (default: in memory, bounded);
            a :class:`~monoai_tornado.dialects.responses_store.RedisResponseStore` shares them.
        otel: OpenTelemetry traces of every prompt (``pip install 'monoai_tornado[otel]'``),
            exported as the standard ``OTEL_*`` variables say (see :mod:`monoai_tornado.otel`).
        http_parser: the HTTP/1 server side of :meth:`http_server`: ``"httptools"``
            (:mod:`monoai_tornado.http1server`, the ``fast`` extra), ``"tornado"`` (Tornado's
            own ``HTTPServer``) or ``"auto"`` (httptools when it is installed).
    """

    def __init__(
        self,
        name: str = "MonoAI Tornado",
        model: Any = None,
        agents: Iterable[Any] | Mapping[str, Any] | None = None,
        rate_limiter: Limiter | None = None,
        user_validator: UserValidator | None = None,
        *,
        cors_origins: Sequence[str] = ("*",),
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        max_ws_message_size: int = DEFAULT_MAX_WS_MESSAGE_SIZE,
        trusted_proxies: Sequence[str] = (),
        reject_invalid_users: bool = False,
        admin_token: str | None = None,
        websocket_ping_interval: float | None = 20.0,
        max_concurrent_runs: int | None = None,
        token_counter: TokenCounter | None = None,
        sse_keepalive_interval: float = 15.0,
        sse_header_hold: float = 1.0,
        idle_timeout: float = 60.0,
        body_timeout: float = 60.0,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        keys: Any = None,
        require_api_key: bool = False,
        gateway: Gateway | None = None,
        prices: Prices | None = None,
        usage_ledger: UsageLedger | None = None,
        responses_store: ResponseStore | None = None,
        otel: bool = False,
        http_parser: str = "auto",
    ) -> None:
        if http_parser not in HTTP_PARSERS:
            raise ValueError(f"http_parser must be one of {HTTP_PARSERS}, not {http_parser!r}")
        if http_parser == "httptools":
            require("httptools", "fast", "http_parser='httptools'")
        #: Which HTTP/1 server side :meth:`http_server` builds: ``"httptools"`` or ``"tornado"``.
        self.http_parser = "httptools" if http_parser == "httptools" or (
            http_parser == "auto" and http1server.available()) else "tornado"
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.name = name
        #: Several models and their deployments (``--config`` with ``[[models]]``), or None.
        self.gateway = gateway
        #: What the model costs (None: unpriced; a gateway's models carry their own prices).
        self.prices = prices
        if gateway is not None and model is None:
            model = gateway.default.backend
        self.model = _as_backend(model) if model is not None else None
        self.agents = _as_agents(agents)
        if rate_limiter is not None and not isinstance(rate_limiter, Limiter):
            raise TypeError(f"rate_limiter must be a RateLimiter (or have its methods), not {type(rate_limiter).__name__}")
        self.websocket_ping_interval = websocket_ping_interval
        self.counter = token_counter or shared_counter(self.model.encoding_model if self.model else None)
        self.keys = _as_key_ring(keys, require_api_key)
        if self.keys is not None and rate_limiter is None:
            rate_limiter = RateLimiter([])  # no defaults, but keys' own limits hold
        self.rate_limiter = rate_limiter
        identity = IdentityResolver(user_validator, trusted_proxies, reject_invalid_users, keys=self.keys)
        #: The endpoints this app serves (see :mod:`monoai_tornado.routes`).
        self.routes = routes_for(has_model=self.model is not None, has_agents=bool(self.agents),
                                 has_keys=self.keys is not None)
        self.pipeline = Pipeline(counter=self.counter, identity=identity, limiter=rate_limiter,
                                 max_concurrent_runs=max_concurrent_runs, default_max_tokens=default_max_tokens,
                                 ledger=usage_ledger, tracing=_tracing() if otel else None)
        if prices is not None:
            for agent in self.agents.values():
                if isinstance(agent, Agent) and agent.model is self.model:
                    agent.prices = prices
        self.context = ServerContext(
            name=name,
            pipeline=self.pipeline,
            model=self._model_target(),
            agents=self.agents,
            cors_origins=tuple(cors_origins),
            max_body_size=max_body_size,
            max_ws_message_size=max_ws_message_size,
            admin_token=admin_token,
            sse_keepalive_interval=sse_keepalive_interval,
            endpoints=tuple(endpoint_names(self.routes)),
            operations=operations(self.routes),
            sse_header_hold=sse_header_hold,
            gateway=gateway,
            responses=MemoryResponseStore() if responses_store is None else responses_store,
        )
        if gateway is not None:
            gateway.on_reload.append(lambda router: setattr(self.context, "model", self._model_target()))
            from .routing.metrics import deployment_metrics

            self.pipeline.metrics.sections.append(lambda: deployment_metrics(gateway.router))
        metrics = self.pipeline.metrics
        metrics.gauge("monoai_runs_in_flight", "Runs in flight in this process.",
                      lambda: self.pipeline.runs_in_flight)
        metrics.gauge("monoai_websockets_open", "Open WebSocket connections in this process.",
                      lambda: len(self.lifecycle.sockets))

    def _model_target(self) -> ModelTarget | None:
        """The target of prompts that name no model: the gateway's default model, else the model."""
        if self.gateway is not None:
            return self.gateway.default
        return ModelTarget(self.model, self.prices) if self.model is not None else None

    @property
    def lifecycle(self) -> Lifecycle:
        """What is in flight in this application, and how it ends (:meth:`aclose`)."""
        return self.pipeline.lifecycle

    def _backends(self) -> list[Backend]:
        """Every backend this application calls: the model's and the agents' own."""
        backends: list[Backend] = [self.model] if self.model is not None else []
        for agent in self.agents.values():
            if isinstance(agent, Agent) and all(agent.model is not known for known in backends):
                backends.append(agent.model)
        return backends

    async def aclose(self, timeout: float = 30.0, server: "HTTPServerLike | None" = None) -> None:
        """End the application's life: stop ``server`` (when given) accepting, let prompts in
        progress finish for up to ``timeout`` seconds, cancel the rest with a reason (their
        clients get ``shutting_down``), close WebSockets and connections, write the usage still
        pending, then close the backends, the rate limiter and the key store."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if server is not None:
            server.stop()
        await self.lifecycle.drain(timeout)
        if server is not None:
            try:
                await asyncio.wait_for(server.close_all_connections(), timeout=max(1.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                log.warning("connections still open after the drain; leaving them")
        for backend in self._backends():
            try:
                await backend.aclose()
            except Exception:
                log.warning("closing backend %s failed", backend.name, exc_info=True)
        if self.rate_limiter is not None:
            await self.rate_limiter.aclose()
        if self.pipeline.ledger is not None:
            await self.pipeline.ledger.aclose()
        if self.keys is not None:
            await self.keys.aclose()
        if self.gateway is not None:
            await self.gateway.aclose()
        await self.context.responses.aclose()
        if self.pipeline.tracing is not None:  # the spans still buffered go out (bounded by OTEL_* timeouts)
            await asyncio.to_thread(self.pipeline.tracing.shutdown)

    def handlers(self, prefix: str = "") -> list[tornado.routing.URLSpec]:
        """URL specs of every endpoint, under ``prefix`` (e.g. ``"/ai"``), for your own app."""
        return url_specs(self.routes, prefix, self.context)

    def make_app(self, **settings: Any) -> tornado.web.Application:
        """A ``tornado.web.Application`` serving every endpoint (JSON 404 for the rest)."""
        settings.setdefault("default_handler_class", NotFoundHandler)
        settings.setdefault("default_handler_args", {"context": self.context})
        settings.setdefault("websocket_ping_interval", self.websocket_ping_interval)
        settings.setdefault("log_function", log_request)
        return TaskApplication(self.handlers(), **settings)

    def http_server(self, **settings: Any) -> "HTTPServerLike":
        """A server for :meth:`make_app` (``listen``/``add_sockets``, ``stop``, ``close_all_connections``),
        with a body cap above our own limit: httptools' (:mod:`monoai_tornado.http1server`) or
        Tornado's ``HTTPServer``, as ``http_parser`` says.

        Its idle, header and body timeouts are kept by one timer for all connections
        (:mod:`monoai_tornado.deadlines`) rather than by Tornado's timer per request.

        Bodies over ``max_body_size`` get our JSON 413; the server's own cap (far above it) only
        stops a client that sends without end.
        """
        server_cls: Any = DeadlineHTTPServer
        if self.http_parser == "httptools":
            from .http1server.server import FastHTTPServer
            server_cls = FastHTTPServer
        server: HTTPServerLike = server_cls(
            self.make_app(**settings),
            max_body_size=max(self.context.max_body_size * 4, 16 * 1024 * 1024),
            idle_connection_timeout=self.idle_timeout,  # also bounds slow headers (slow-loris)
            body_timeout=self.body_timeout,
        )
        return server

    def log_start(self, host: str, port: int) -> None:
        base = f"http://{host}:{port}"
        log.info("%s serving on %s", self.name, base)
        if self.gateway is not None:
            for name, route in self.gateway.router.models.items():
                log.info("model %s: %s", name, ", ".join(
                    f"{d.id} ({d.backend.provider} {d.config.base_url or d.config.backend})" for d in route.deployments))
        elif self.model is not None:
            described = self.model.describe()
            demo = " (DEMO model: not a real LLM)" if described.get("provider") == "demo" else ""
            log.info("model %s/%s%s", described["provider"], described["name"], demo)
        log.info("token usage counted with tiktoken encoding %s when a backend reports none",
                 self.counter.encoding_name)
        if "*" in self.context.cors_origins and not _is_loopback(host):
            log.warning("listening on %s with every origin allowed: any web page a visitor opens can call "
                        "this server and open WebSockets with their user_id, spending their budget; allow "
                        "only your own pages with --cors-origin https://your.site "
                        "(Application(cors_origins=[...]))", host)

    def endpoint_lines(self, base: str) -> list[str]:
        """Human readable list of what is served, for the start banner."""
        return endpoint_lines(self.routes, base, self.agents)

    def serve(self, host: str = "127.0.0.1", port: int = 8000, *, drain_timeout: float = 30.0) -> None:
        """Listen on ``host:port`` until SIGTERM or SIGINT, then drain as the command line does.

        It greets and logs as ``python -m monoai_tornado`` does (timestamped lines on stderr,
        unless logging is configured already).
        """
        from .server import configure_logging, run

        configure_logging()
        run(lambda: self, host, port, drain_timeout=drain_timeout)
