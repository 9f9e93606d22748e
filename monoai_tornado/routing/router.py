"""One configuration's models: their routes, aliases, default model, retries and cooldown.

A :class:`Router` never changes once built; a reload builds another (runs in flight keep the
one they started on).
"""
from __future__ import annotations

import fnmatch
import time
from typing import Callable, Iterator

from ..backends.base import Backend
from ..config import DeploymentConfig, GatewayConfig
from ..ratelimit import Limit, RateLimiter, Store
from .slots import ModelRoute
from .state import Deployment

BackendFactory = Callable[[DeploymentConfig], Backend]

#: Resolved client model names remembered per router (bounded: clients choose the names).
MAX_REMEMBERED = 1024


def deployment_limiter(config: DeploymentConfig, store: Store | None) -> RateLimiter | None:
    """The limiter of a deployment's ``rpm`` / ``tpm`` in ``store`` (None when it has neither)."""
    limits = []
    if config.rpm is not None:
        limits.append(Limit("request", config.rpm, "minute", name="deployment-rpm"))
    if config.tpm is not None:
        limits.append(Limit("token", config.tpm, "minute", name="deployment-tpm"))
    return RateLimiter(limits, store) if limits else None


class Router:
    """The models of one configuration, ready to route calls."""

    def __init__(self, config: GatewayConfig, build: BackendFactory, store: Store | None = None) -> None:
        self.config = config
        routing = config.routing
        self.retries = routing.retries
        self.cooldown = routing.cooldown
        self.deployments = tuple(Deployment(entry, build(entry), deployment_limiter(entry, store))
                                 for entry in config.models)
        self.models: dict[str, ModelRoute] = {}
        for name in config.model_names:
            mine = [deployment for deployment in self.deployments if deployment.name == name]
            self.models[name] = ModelRoute(name, mine, routing.fallbacks.get(name, ()), routing.strategy,
                                           routing.queue_timeout)
        default = config.default_model
        assert default is not None, "a router needs at least one model"
        self.default_model: str = default
        self.aliases = tuple(routing.aliases.items())
        self._resolved: dict[str, str | None] = {}
        self._chains = {name: tuple(self._chain_of(name)) for name in self.models}
        self._by_id: dict[str, Deployment] = {}
        for deployment in self.deployments:
            self._by_id.setdefault(deployment.id, deployment)

    def resolve(self, name: str | None) -> str | None:
        """The model a client's ``model`` names (None: the default): itself, else the first
        alias whose glob matches it; None when unknown."""
        if name is None:
            return self.default_model
        if name in self.models:
            return name
        known = self._resolved.get(name, "")
        if known != "":
            return known
        found = next((model for pattern, model in self.aliases if fnmatch.fnmatchcase(name, pattern)), None)
        if len(self._resolved) >= MAX_REMEMBERED:
            self._resolved.clear()
        self._resolved[name] = found
        return found

    def deployment(self, deployment_id: str) -> Deployment | None:
        """The deployment of that id (None: none has it)."""
        return self._by_id.get(deployment_id)

    def chain(self, name: str) -> tuple[ModelRoute, ...]:
        """The model ``name``, then its fallbacks (each once, a fallback's own fallbacks not followed)."""
        return self._chains[name]

    def _chain_of(self, name: str) -> Iterator[ModelRoute]:
        route = self.models[name]
        yield route
        for fallback in route.fallbacks:
            if fallback != name and fallback in self.models:
                yield self.models[fallback]

    def retry_after(self) -> int:
        """Seconds to the soonest end of a cooldown (1 when none is cooling down)."""
        now = time.monotonic()
        ends = [deployment.cooling_until - now for deployment in self.deployments
                if not deployment.disabled and deployment.cooling_until > now]
        return max(1, int(min(ends)) + 1) if ends else 1

    def health(self, detailed: bool) -> tuple[dict[str, object], bool]:
        """``/health``'s ``models`` object, and whether every model has a deployment able to serve."""
        now = time.monotonic()
        body: dict[str, object] = {}
        able = True
        for name, route in self.models.items():
            body[name] = {"deployments": [deployment.describe(detailed, now) for deployment in route.deployments]}
            able = able and route.able(now)
        return body, able
