"""Reading a ``--config`` TOML file into a :class:`~monoai_tornado.config.model.GatewayConfig`.

Every problem is a :class:`~monoai_tornado.config.model.ConfigError` naming the file, the key
(``models[2].weight``, ``routing.fallbacks.chat``) and what is wrong with it.
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import tomllib
from typing import Any, Callable, Mapping

from .model import (BACKEND_KINDS, STRATEGIES, ConfigError, DeploymentConfig, GatewayConfig, Prices,
                    RoutingConfig)
from .options import server_values

TABLES = ("server", "models", "routing")
_MODEL_KEYS = ("name", "id", "backend", "base_url", "upstream_model", "api_key_env", "object", "weight",
               "max_concurrent", "rpm", "tpm", "timeout", "total_timeout", "max_tokens", "temperature",
               "extra_body", "prompt_tokens", "upstream_stream", "price_input", "price_output", "price_cached_input")
_ROUTING_KEYS = ("default_model", "strategy", "retries", "cooldown", "queue_timeout", "fallbacks", "aliases")
PROMPT_TOKEN_METHODS = ("estimate", "chat", "vllm", "llama-server")


class _Reader:
    """Typed reads of one table's keys; every problem names ``where`` and the key."""

    def __init__(self, where: str, prefix: str, table: Mapping[str, Any], known: tuple[str, ...]) -> None:
        self.where, self.prefix, self.table = where, prefix, table
        for key in table:
            if key not in known:
                raise self.error(key, f"unknown key (known: {', '.join(known)})")

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.where, f"{self.prefix}{key}", problem)

    def string(self, key: str, choices: tuple[str, ...] = ()) -> str | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, not {_shown(value)}")
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def number(self, key: str, *, whole: bool = False, positive: bool = False) -> Any:
        value = self.table.get(key)
        if value is None:
            return None
        wrong = isinstance(value, bool) or not isinstance(value, int if whole else (int, float))
        if wrong or (isinstance(value, float) and math.isnan(value)):
            raise self.error(key, f"must be {'a whole number' if whole else 'a number'}, not {_shown(value)}")
        if value < 0 or (positive and value == 0):
            raise self.error(key, f"must be {'> 0' if positive else '>= 0'}, not {value}")
        return value if whole else float(value)

    def table_of(self, key: str) -> Mapping[str, Any]:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, not {_shown(value)}")
        return value


def _shown(value: Any) -> str:
    kind = {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})" if not isinstance(value, (list, dict)) else kind


def load_config(path: str, parser: argparse.ArgumentParser | None = None) -> GatewayConfig:
    """Read and check ``path``; ``parser`` checks the ``[server]`` options (omitted: kept unchecked)."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    return parse_config(document, path, parser)


def parse_config(document: Mapping[str, Any], path: str,
                 parser: argparse.ArgumentParser | None = None) -> GatewayConfig:
    """Check a parsed TOML ``document`` (``path`` names it in errors)."""
    for key in document:
        if key not in TABLES:
            raise ConfigError(path, key, f"unknown table (known: {', '.join(TABLES)})")
    server = document.get("server", {})
    if not isinstance(server, dict):
        raise ConfigError(path, "server", "must be a table ([server])")
    models = document.get("models", [])
    if not isinstance(models, list) or not all(isinstance(entry, dict) for entry in models):
        raise ConfigError(path, "models", "must be an array of tables ([[models]])")
    routing = document.get("routing", {})
    if not isinstance(routing, dict):
        raise ConfigError(path, "routing", "must be a table ([routing])")
    values = server_values(server, parser, lambda key, problem: ConfigError(path, f"server.{key}", problem)) \
        if parser is not None else dict(server)
    deployments = _deployments(models, path)
    return GatewayConfig(path, values, deployments, _routing(routing, path, deployments))


def _deployments(entries: list[dict[str, Any]], path: str) -> tuple[DeploymentConfig, ...]:
    deployments: list[DeploymentConfig] = []
    seen: dict[str, int] = {}
    counts: dict[str, int] = {}
    for index, entry in enumerate(entries):
        read = _Reader(path, f"models[{index}].", entry, _MODEL_KEYS)
        name = read.string("name")
        if name is None:
            raise read.error("name", "required: the model name clients send as 'model'")
        counts[name] = counts.get(name, 0) + 1
        ident = read.string("id") or f"{name}#{counts[name]}"
        if ident in seen:
            raise read.error("id", f"duplicate deployment id {ident!r} (also models[{seen[ident]}])")
        seen[ident] = index
        backend = read.string("backend", BACKEND_KINDS) or "openai"
        base_url = read.string("base_url")
        if backend == "openai" and base_url is None:
            raise read.error("base_url", "required for backend 'openai' (e.g. http://127.0.0.1:8000/v1)")
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise read.error("base_url", f"must be an http:// or https:// URL, not {base_url!r}")
        spec = read.string("object")
        if backend == "monoai" and (spec is None or spec.count(":") != 1):
            raise read.error("object", "required for backend 'monoai': 'module:attribute'")
        extra_body = read.table_of("extra_body")
        deployments.append(DeploymentConfig(
            name=name, id=ident, backend=backend, base_url=base_url,  # type: ignore[arg-type]
            upstream_model=read.string("upstream_model"), api_key_env=read.string("api_key_env"), object=spec,
            weight=1.0 if "weight" not in entry else read.number("weight", positive=True),
            max_concurrent=read.number("max_concurrent", whole=True, positive=True),
            rpm=read.number("rpm", whole=True, positive=True), tpm=read.number("tpm", whole=True, positive=True),
            timeout=read.number("timeout", positive=True), total_timeout=read.number("total_timeout", positive=True),
            max_tokens=read.number("max_tokens", whole=True, positive=True), temperature=read.number("temperature"),
            extra_body=dict(extra_body), prompt_tokens=read.string("prompt_tokens", PROMPT_TOKEN_METHODS),
            upstream_stream=read.string("upstream_stream", ("always", "as-client")),
            prices=_prices(read)))
    return tuple(deployments)


def _prices(read: _Reader) -> Prices | None:
    given = {key: read.number(key) for key in ("price_input", "price_output", "price_cached_input")}
    if all(value is None for value in given.values()):
        return None
    for key in ("price_input", "price_output"):
        if given[key] is None:
            raise read.error(key, "required when the model has any price (USD per million tokens)")
    cached = given["price_cached_input"]
    return Prices(given["price_input"], given["price_output"], given["price_input"] if cached is None else cached)


def _routing(table: Mapping[str, Any], path: str, deployments: tuple[DeploymentConfig, ...]) -> RoutingConfig:
    read = _Reader(path, "routing.", table, _ROUTING_KEYS)
    names = set(deployment.name for deployment in deployments)

    def known(key: str, name: Any, what: Callable[[], str]) -> str:
        if not isinstance(name, str):
            raise read.error(key, f"must name a model, not {_shown(name)}")
        if name not in names:
            raise read.error(key, f"{what()} {name!r} is not a model of [[models]] "
                                  f"(models: {', '.join(sorted(names)) or 'none'})")
        return name

    default = read.string("default_model")
    if default is not None:
        known("default_model", default, lambda: "default model")
    fallbacks: dict[str, tuple[str, ...]] = {}
    for model, chain in read.table_of("fallbacks").items():
        key = f"fallbacks.{model}"
        known(key, model, lambda: "model")
        if isinstance(chain, str):
            chain = [chain]
        if not isinstance(chain, list):
            raise read.error(key, f"must be an array of model names, not {_shown(chain)}")
        fallbacks[model] = tuple(known(key, name, lambda: "fallback") for name in chain)
    aliases: dict[str, str] = {}
    for pattern, model in read.table_of("aliases").items():
        aliases[pattern] = known(f"aliases.{pattern}", model, lambda: "alias target")
        fnmatch.translate(pattern)  # every string is a valid glob: nothing to refuse
    retries = read.number("retries", whole=True)
    cooldown = read.number("cooldown")
    queue_timeout = read.number("queue_timeout")
    return RoutingConfig(
        default_model=default, strategy=read.string("strategy", STRATEGIES) or "least-busy",  # type: ignore[arg-type]
        retries=2 if retries is None else retries, cooldown=30.0 if cooldown is None else cooldown,
        queue_timeout=0.0 if queue_timeout is None else queue_timeout, fallbacks=fallbacks, aliases=aliases)
