"""``--config PATH`` (TOML) and ``MONOAI_*`` environment variables (API.md Part 3,
"Configuration file and environment").

:func:`resolve_options` gives the command line its final options (command line, then
environment, then file, then default) and the file's models and routing as frozen objects.
"""
from __future__ import annotations

import argparse
import os
from typing import Mapping, Sequence

from .file import load_config, parse_config
from .model import ConfigError, DeploymentConfig, GatewayConfig, Prices, RoutingConfig
from .options import env_name, environment_values, given_on_command_line, merge

__all__ = ["ConfigError", "DeploymentConfig", "GatewayConfig", "Prices", "RoutingConfig", "load_config",
           "parse_config", "resolve_options", "secrets_on_command_line"]

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
    return config


def secrets_on_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The secret options ``argv`` gives (visible to every user of the machine in ``ps``)."""
    given = given_on_command_line(parser, argv)
    return [key for key in SECRET_OPTIONS if key in given]
