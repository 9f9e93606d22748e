"""Small waits on futures, cheaper than the general ones of :mod:`asyncio` for the one case they serve."""
from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["until_done"]


async def until_done(future: "asyncio.Future[Any]", timeout: float) -> None:
    """Wait until ``future`` is done or ``timeout`` seconds have passed, whichever comes first;
    ``future`` is neither cancelled nor awaited (``asyncio.wait([future], timeout=...)`` without
    its set, its task checks and its second future: one callback and one timer)."""
    if future.done():
        return
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(timeout, wake)
    future.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        future.remove_done_callback(wake)
