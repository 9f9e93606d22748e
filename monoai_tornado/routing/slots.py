"""Taking a deployment of a model for one call, and giving it back.

A deployment takes a call when it is usable (not cooling down, not disabled), under its
``max_concurrent``, and within its ``rpm`` / ``tpm`` (admitted by its own limiter, whose store
is the server's, so the counts are shared through Redis). When every usable deployment is at
``max_concurrent``, the call waits up to ``queue_timeout`` seconds for a slot, first come first
served: a slot given back goes straight to the oldest waiter.
"""
from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from ..ratelimit import Admission
from .choice import chooser
from .state import Deployment


@dataclass(slots=True)
class Slot:
    """A deployment taken for one call; give it back with :meth:`ModelRoute.release`."""

    deployment: Deployment
    admission: Admission | None = None


class ModelRoute:
    """The deployments of one model name, its fallbacks, and the queue of calls waiting for a slot."""

    def __init__(self, name: str, deployments: Sequence[Deployment], fallbacks: Sequence[str], strategy: str,
                 queue_timeout: float) -> None:
        self.name = name
        self.deployments = tuple(deployments)
        self.fallbacks = tuple(fallbacks)
        self.strategy = strategy
        self.queue_timeout = queue_timeout
        self._choose: Callable[[Sequence[Deployment], int, float], Deployment] = chooser(strategy)
        self._turn = 0
        self._random = random.random
        self._waiters: collections.deque[asyncio.Future[Deployment]] = collections.deque()
        #: No deployment has ``rpm`` / ``tpm``: a free one is taken without asking a limiter.
        self._unlimited = all(deployment.limiter is None for deployment in self.deployments)

    def able(self, now: float) -> bool:
        """Whether some deployment may serve (usable, whatever its load)."""
        return any(deployment.usable(now) for deployment in self.deployments)

    def select(self, exclude: frozenset[str] | set[str], now: float) -> Deployment | None | bool:
        """The deployment the strategy picks among the usable ones with room (not in ``exclude``);
        True when usable ones exist but all are full; None when none is usable."""
        free = []
        full = False
        for deployment in self.deployments:
            if now < deployment.available_at or deployment.id in exclude:  # (not ``usable``)
                continue
            if deployment.max_concurrent is None or deployment.in_flight < deployment.max_concurrent:
                free.append(deployment)
            else:
                full = True
        if not free:
            return True if full else None
        turn = self._turn
        self._turn = turn + 1
        if len(free) == 1:
            return free[0]
        return self._choose(free, turn, self._random())

    def take(self, exclude: set[str]) -> Slot | None:
        """A slot at once on a deployment not in ``exclude`` that has room and neither ``rpm``
        nor ``tpm`` (the usual case, without a coroutine); None: ask :meth:`acquire`."""
        if self._waiters or not self._unlimited:
            return None
        chosen = self.select(exclude, time.monotonic())
        if not isinstance(chosen, Deployment):
            return None
        chosen.in_flight += 1
        return Slot(chosen)

    async def acquire(self, exclude: set[str], prompt_tokens: Callable[[], int]) -> Slot | None:
        """A slot on a deployment not in ``exclude``; None when none can take the call (all
        cooling down, over ``rpm``/``tpm``, or full past ``queue_timeout``). A deployment over
        its ``rpm``/``tpm`` is added to ``exclude``."""
        deadline: float | None = None
        while True:
            now = time.monotonic()
            chosen = None if self._waiters else self.select(exclude, now)
            if chosen is None and not self._waiters:
                return None
            if isinstance(chosen, Deployment):
                chosen.in_flight += 1
            else:  # every usable deployment is full, or others wait already: queue
                if deadline is None:
                    deadline = now + self.queue_timeout
                if now >= deadline:
                    return None
                chosen = await self._wait(deadline - now)
                if chosen is None:
                    return None
            slot = await self._admitted(chosen, prompt_tokens)
            if slot is not None:
                return slot
            exclude.add(chosen.id)

    async def _wait(self, seconds: float) -> Deployment | None:
        """Wait for a slot handed over by :meth:`release` (its ``in_flight`` already counted)."""
        waiter: asyncio.Future[Deployment] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), seconds)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            handed = waiter.done() and not waiter.cancelled()
            if not handed:
                waiter.cancel()
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            if isinstance(exc, asyncio.CancelledError):
                if handed:  # a slot came with the cancel: pass it on
                    self.release(Slot(waiter.result()))
                raise
            return waiter.result() if handed else None

    def pump(self) -> None:
        """Hand free capacity to waiting calls (a deployment rejoined, or another was left)."""
        while self._waiters:
            chosen = self.select(frozenset(), time.monotonic())
            if not isinstance(chosen, Deployment):
                return
            waiter = self._waiters.popleft()
            if not waiter.done():
                chosen.in_flight += 1
                waiter.set_result(chosen)

    async def _admitted(self, deployment: Deployment, prompt_tokens: Callable[[], int]) -> Slot | None:
        """The slot, once the deployment's ``rpm`` / ``tpm`` admit the call (None: they refuse)."""
        limiter = deployment.limiter
        if limiter is None:
            return Slot(deployment)
        try:
            admission = await limiter.admit(f"deployment:{deployment.id}", prompt_tokens())
        except BaseException:
            self.release(Slot(deployment))
            raise
        if not admission.allowed:
            self.release(Slot(deployment))
            return None
        return Slot(deployment, admission)

    def release(self, slot: Slot, total_tokens: int | None = None) -> None:
        """Give ``slot`` back (to the oldest caller waiting, if any); settle its ``tpm`` count."""
        deployment = slot.deployment
        limiter = deployment.limiter
        if limiter is not None and slot.admission is not None:
            admission, slot.admission = slot.admission, None
            total = admission.reserved_tokens if total_tokens is None else total_tokens
            if not limiter.settle_now(admission, total):
                task = asyncio.ensure_future(limiter.settle(admission, total))
                task.add_done_callback(_seen)
        if self._waiters and deployment.usable(time.monotonic()):
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(deployment)  # the slot passes on: in_flight unchanged
                    return
        deployment.in_flight -= 1
        if self._waiters:
            self.pump()


def _seen(task: "asyncio.Future[None]") -> None:
    if not task.cancelled():
        task.exception()
