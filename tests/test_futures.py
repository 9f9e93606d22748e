"""``until_done``: waits for a future or a timeout, whichever comes first, and leaves the future alone."""
from __future__ import annotations

import asyncio
import time

from monoai_tornado.futures import until_done


async def test_it_returns_when_the_future_is_done_before_the_timeout() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.05, future.set_result, 7)
    started = time.monotonic()
    await until_done(future, 5)
    assert future.result() == 7 and time.monotonic() - started < 1


async def test_at_the_timeout_it_returns_and_the_future_runs_on() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    started = time.monotonic()
    await until_done(future, 0.05)
    assert 0.04 < time.monotonic() - started < 1
    assert not future.done()  # neither cancelled nor awaited
    future.set_result(1)  # and nothing of the wait is left on it
    await asyncio.sleep(0)


async def test_cancelling_the_waiter_leaves_the_future_alone() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(until_done(future, 5))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled() and not future.done()
