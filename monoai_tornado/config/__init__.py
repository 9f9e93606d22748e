"""``--config PATH`` (TOML) and ``MONOAI_*`` environment variables (API.md Part 3,
"Configuration file and environment").

:func:`resolve_options` gives the command line its final options (command line, then
environment, then file, then default) and the file's models and routing as frozen objects.
"""
from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Mapping, Sequence

from .file import load_config, parse_config
from .model import ConfigError, DeploymentConfig, GatewayConfig, Prices, RoutingConfig
from .options import env_name, environment_values, given_on_command_line, merge

if TYPE_CHECKING:
    from ..ratelimit import Limit

__all__ = ["ConfigError", "DeploymentConfig", "GatewayConfig", "Prices", "RoutingConfig", "load_config",
           "parse_config", "reloaded_limits", "resolve_options", "secrets_on_command_line"]

#: Options that hold secrets: they should come from the environment or the file.
SECRET_OPTIONS = ("admin_token",)


def resolve_options(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str],
                    environ: Mapping[str, str] | None = None) -> GatewayConfig | None:
    """Complete ``args`` (parsed from ``argv``) from the environment and ``args.config`` (or
    ``MONOAI_CONFIG``); returns the file's configuration (None without a file).

    Raises :class:`ConfigError` for an invalid file or variable.
    """
    environ = os.environ if environ is None else environ
    path = getattr(args, "config", None) or environ.get(env_name("config"), "").strip() or None
    args.config = path
    config = load_config(path, parser) if path else None
    from_env = environment_values(parser, environ, lambda key, problem: ConfigError("environment", key, problem))
    given = given_on_command_line(parser, argv)
    merge(args, given, config.server if config is not None else {}, from_env)
    #: What a reloaded file cannot change: the options the command line or the environment set.
    args.fixed_options = frozenset(given | set(from_env))
    return config


#: ``[server]`` options a reload applies (the others are read at start only).
RELOADED_LIMITS = ("limit", "token_limit", "spend_limit")


def reloaded_limits(args: argparse.Namespace, config: GatewayConfig) -> list[Limit] | None:
    """The server's default limits under a reloaded file: its ``[server]`` ``limit``,
    ``token_limit`` and ``spend_limit`` (absent: none) unless the command line or the
    environment set them; None when neither of them can change."""
    fixed: frozenset[str] = getattr(args, "fixed_options", frozenset())
    if all(key in fixed for key in RELOADED_LIMITS):
        return None
    limits: list[Limit] = []
    for key in RELOADED_LIMITS:
        limits += getattr(args, key, []) if key in fixed else config.server.get(key, [])
    return limits


def secrets_on_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The secret options ``argv`` gives (visible to every user of the machine in ``ps``)."""
    given = given_on_command_line(parser, argv)
    return [key for key in SECRET_OPTIONS if key in given]
