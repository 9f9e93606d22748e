"""The configuration file's content as frozen, typed objects (API.md Part 3, "Models and deployments").

Built once by :func:`monoai_tornado.config.load_config`; the router and the command line read
these objects, never the TOML dictionaries.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

Strategy = Literal["least-busy", "weighted", "round-robin"]
BackendKind = Literal["openai", "demo", "monoai"]

STRATEGIES: tuple[Strategy, ...] = ("least-busy", "weighted", "round-robin")
BACKEND_KINDS: tuple[BackendKind, ...] = ("openai", "demo", "monoai")


class ConfigError(Exception):
    """An invalid configuration: ``where`` (the file), ``key`` and ``problem`` make its one line."""

    def __init__(self, where: str, key: str, problem: str) -> None:
        self.where, self.key, self.problem = where, key, problem
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


@dataclass(frozen=True)
class Prices:
    """A model's prices in USD per million tokens, as the file gives them (the money code converts)."""

    input: float
    output: float
    #: Cached prompt tokens (the file's ``price_cached_input``; default: ``input``).
    cached_input: float


@dataclass(frozen=True)
class DeploymentConfig:
    """One ``[[models]]`` entry: a deployment (replica) of the model ``name``."""

    name: str
    id: str
    backend: BackendKind = "openai"
    base_url: str | None = None
    upstream_model: str | None = None
    api_key_env: str | None = None
    object: str | None = None
    weight: float = 1.0
    max_concurrent: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    timeout: float | None = None
    total_timeout: float | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    prompt_tokens: str | None = None
    upstream_stream: str | None = None
    #: None when the entry names no price (cost not tracked).
    prices: Prices | None = None

    @property
    def sent_model(self) -> str:
        """The model name sent upstream."""
        return self.upstream_model or self.name


@dataclass(frozen=True)
class RoutingConfig:
    """The ``[routing]`` table."""

    default_model: str | None = None
    strategy: Strategy = "least-busy"
    retries: int = 2
    cooldown: float = 30.0
    queue_timeout: float = 0.0
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayConfig:
    """A whole configuration file: ``[server]`` option values (by argparse name), the
    deployments in file order, and the routing."""

    path: str
    server: Mapping[str, Any] = field(default_factory=dict)
    models: tuple[DeploymentConfig, ...] = ()
    routing: RoutingConfig = field(default_factory=RoutingConfig)

    @property
    def model_names(self) -> tuple[str, ...]:
        """Every model name, in the order of their first deployment."""
        return tuple(dict.fromkeys(deployment.name for deployment in self.models))

    @property
    def default_model(self) -> str | None:
        """``[routing] default_model``, else the first model (None without models)."""
        names = self.model_names
        return self.routing.default_model or (names[0] if names else None)
