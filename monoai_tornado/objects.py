"""Objects that options name as ``module:attribute`` (``--agents``, ``--user-validator``,
``[[models]]``'s ``object``): :func:`load_object`, and :class:`OptionError` for one that cannot
be used. A module of its own so the CLI and the router's backend builder both import it
(routing/build.py importing cli.py, which imports routing, was a loop)."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable

__all__ = ["OptionError", "load_object"]


class OptionError(Exception):
    """An option that cannot be used as given; its message is the one line the user sees."""


def load_object(spec: str, option: str = "") -> Callable[..., Any]:
    """Import the callable ``module:attribute`` named by ``option`` (the working directory first,
    as ``python -m`` does, so that ``--agents examples.agent_with_tools:build_agents`` works)."""
    module_name, _, attribute = spec.partition(":")
    option = f"{option} {spec}" if option else spec
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OptionError(f"{option}: cannot import {module_name!r} ({exc})") from None
    except Exception as exc:
        raise OptionError(f"{option}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise OptionError(f"{option}: module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(value):
        raise OptionError(f"{option}: {attribute!r} is not callable")
    return value  # type: ignore[no-any-return]
