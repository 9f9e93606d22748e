"""The scripts and style sheets shipped as package data under ``static/``: what ``GET /static/NAME``
serves (handlers/pages.py) and what the OpenAPI document lists as its names (openapi.py)."""
from __future__ import annotations

import functools
import importlib.resources

__all__ = ["ASSET_TYPES", "static_asset", "static_assets"]

#: Files under ``static/`` that may be served, with their content types.
ASSET_TYPES = {".js": "application/javascript; charset=UTF-8", ".css": "text/css; charset=UTF-8"}


@functools.lru_cache(maxsize=1)
def static_assets() -> frozenset[str]:
    """Names (relative to ``static/``) of the scripts and style sheets shipped as package data."""
    root = importlib.resources.files("monoai_tornado").joinpath("static")
    names: set[str] = set()
    for folder, prefix in ((root, ""), (root.joinpath("vendor"), "vendor/")):
        for entry in folder.iterdir():
            if entry.is_file() and entry.name.endswith(tuple(ASSET_TYPES)):
                names.add(prefix + entry.name)
    return frozenset(names)


@functools.lru_cache(maxsize=16)
def static_asset(name: str) -> bytes:
    return importlib.resources.files("monoai_tornado").joinpath("static", *name.split("/")).read_bytes()
