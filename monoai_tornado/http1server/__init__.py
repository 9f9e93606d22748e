"""An HTTP/1.1 server side for Tornado's ``Application`` on asyncio transports, parsed by httptools.

Tornado's own server reads each request through ``IOStream`` futures and a coroutine per
message; this one parses in C as bytes arrive and writes answers straight to the transport,
while routing, ``RequestHandler`` and ``WebSocketHandler`` stay Tornado's. It needs httptools
(the ``fast`` extra); :func:`available` tells whether it can run.
"""
from __future__ import annotations

import importlib.util

__all__ = ["available"]


def available() -> bool:
    """Whether httptools is installed."""
    return importlib.util.find_spec("httptools") is not None
