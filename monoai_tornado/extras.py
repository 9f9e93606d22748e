"""Optional dependencies, imported only when the feature that needs them is asked for.

Each lives in a setup.py extra (``pip install 'monoai_tornado[redis]'``); asking for the
feature without it raises :class:`MissingExtra`, whose message says what to install.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtra", "optional", "require"]


class MissingExtra(ImportError):
    """An optional package a feature needs is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming the ``extra`` to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(f"{feature} needs the '{module.partition('.')[0]}' package: "
                           f"pip install 'monoai_tornado[{extra}]'") from exc


def optional(module: str) -> ModuleType | None:
    """The module when it is installed, else None: for a C-speed part that has a Python twin
    (``fastjson``'s msgspec, the upstream reader's httptools, the key hash's CPython SHA-256)."""
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - without the fast extra
        return None
