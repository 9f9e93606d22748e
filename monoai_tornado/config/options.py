"""Command-line options from three more places: the file's ``[server]`` table, ``MONOAI_*``
environment variables, and the defaults.

Precedence: command line, then environment, then the file, then the default. Every value is
converted and checked by its option's own argparse ``type`` and ``choices``, so an option means
the same wherever it comes from.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable, Iterable, Mapping, Sequence

#: Options that are not settings (never read from a file or the environment).
NOT_SETTINGS = ("help", "version", "config")
ENV_PREFIX = "MONOAI_"

Problem = Callable[[str, str], Exception]


def settings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's options by their ``[server]`` key (the long name with ``_`` for ``-``)."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse keeps no public list of its actions
        if action.option_strings and action.dest not in NOT_SETTINGS:
            found[action.dest] = action
    return found


def env_name(key: str) -> str:
    """``admin_token`` -> ``MONOAI_ADMIN_TOKEN``."""
    return ENV_PREFIX + key.upper()


def _flag(action: argparse.Action) -> bool:
    return action.nargs == 0 and isinstance(action.const, bool)


def _convert(action: argparse.Action, text: str) -> Any:
    """``text`` through the option's type and choices; ValueError with the problem."""
    convert = action.type if callable(action.type) else str
    try:
        value = convert(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None
    except (TypeError, ValueError):
        noun = "a whole number" if convert is int else "a number" if convert is float else "valid"
        raise ValueError(f"not {noun}: {text!r}") from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"must be one of {', '.join(map(str, action.choices))}, not {text!r}")
    return value


def _scalar_text(value: Any) -> str | None:
    """The text of a TOML scalar an option can take (None: the wrong type)."""
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def server_values(table: Mapping[str, Any], parser: argparse.ArgumentParser, problem: Problem) -> dict[str, Any]:
    """The ``[server]`` table as option values; ``problem(key, text)`` makes the error raised."""
    known = settings(parser)
    values: dict[str, Any] = {}
    for key, value in table.items():
        action = known.get(key)
        if action is None:
            raise problem(key, "unknown option (every command-line option, with '_' for '-')")
        try:
            values[key] = _from_file(action, value)
        except ValueError as exc:
            raise problem(key, str(exc)) from None
    return values


def _from_file(action: argparse.Action, value: Any) -> Any:
    if _flag(action):
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, not {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        texts = [_scalar_text(item) for item in items]
        if any(text is None for text in texts):
            raise ValueError(f"must be an array of strings, like [\"60/minute\"], not {value!r}")
        return [_convert(action, text) for text in texts if text is not None]
    if isinstance(value, dict) and callable(action.type):  # a JSON-object option (extra_body) as a table
        return _convert(action, json.dumps(value))
    text = _scalar_text(value)
    if text is None:
        raise ValueError(f"must be a string or a number, not {value!r}")
    return _convert(action, text)


def environment_values(parser: argparse.ArgumentParser, environ: Mapping[str, str],
                       problem: Problem) -> dict[str, Any]:
    """Option values from ``MONOAI_*`` variables (repeatable options: comma-separated)."""
    values: dict[str, Any] = {}
    for key, action in settings(parser).items():
        text = environ.get(env_name(key), "").strip()
        if not text:
            continue
        try:
            values[key] = _from_environment(action, text)
        except ValueError as exc:
            raise problem(env_name(key), str(exc)) from None
    return values


def _from_environment(action: argparse.Action, text: str) -> Any:
    if _flag(action):
        lowered = text.lower()
        if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(f"must be true or false (1/0, yes/no), not {text!r}")
        return lowered in ("1", "true", "yes", "on")
    if isinstance(action, argparse._AppendAction):
        return [_convert(action, part.strip()) for part in text.split(",") if part.strip()]
    return _convert(action, text)


def given_on_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The options ``argv`` itself sets (parsed once more with every default suppressed)."""
    actions = list(settings(parser).values())
    saved = [action.default for action in actions]
    for action in actions:
        action.default = argparse.SUPPRESS
    try:
        namespace = parser.parse_args(list(argv))
    finally:
        for action, default in zip(actions, saved):
            action.default = default
    return set(vars(namespace))


def merge(args: argparse.Namespace, given: Iterable[str], *layers: Mapping[str, Any]) -> set[str]:
    """Set on ``args`` every option of ``layers`` (later ones win) not ``given`` on the command
    line; returns the keys set."""
    given = set(given)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    for key, value in merged.items():
        if key not in given:
            setattr(args, key, value)
    return set(merged) - given
