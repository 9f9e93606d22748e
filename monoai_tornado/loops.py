"""Which asyncio event loop the server runs on: uvloop when it is installed, else asyncio's own.

uvloop (``pip install monoai_tornado[fast]``) is a drop-in event loop on libuv; Tornado runs on
it unchanged. ``--event-loop asyncio`` keeps the standard loop even when uvloop is there.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from .extras import MissingExtra, require

CHOICES = ("auto", "uvloop", "asyncio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str = "auto") -> tuple[str, LoopFactory | None]:
    """``(name, factory)`` of the loop ``choice`` asks for; the factory is None for asyncio's own.

    ``"uvloop"`` raises :class:`~monoai_tornado.extras.MissingExtra` when uvloop is not
    installed; ``"auto"`` falls back to asyncio.
    """
    if choice not in CHOICES:
        raise ValueError(f"event loop must be one of {CHOICES}, not {choice!r}")
    if choice == "asyncio":
        return "asyncio", None
    try:
        uvloop = require("uvloop", "fast", "--event-loop uvloop")
    except MissingExtra:
        if choice == "uvloop":
            raise
        return "asyncio", None
    factory: LoopFactory = uvloop.new_event_loop
    return "uvloop", factory
