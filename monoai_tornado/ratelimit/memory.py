"""The in-memory store: counters of one process, the embedded default.

Each limit keeps only its current window (a dict of user -> count and the window's total);
when a later window starts, the old one is dropped whole, so memory is bounded by the users
active in the current windows. Every method runs without an ``await`` between check and
increment, which makes each decision atomic on one event loop without locks.
"""
from __future__ import annotations

from typing import Sequence

from ..money.prices import Quote, affordable, nanos_of
from .limits import Limit

__all__ = ["MemoryStore"]


class _Window:
    """The counters of one limit's current window."""

    __slots__ = ("start", "counts", "total", "reserved")

    def __init__(self, start: int) -> None:
        self.start = start
        self.counts: dict[str, int] = {}
        self.total = 0
        #: user -> tokens (nano-dollars) of ``counts`` held by runs in flight (a token or spend
        #: limit's reservations).
        self.reserved: dict[str, int] = {}


class MemoryStore:
    """Counters for one process; pass several processes a :class:`RedisStore` instead.

    Example::

        limiter = RateLimiter([Limit("request", 10, "minute")], MemoryStore())

    A store serves the limits of one limiter: windows are kept per limit name.
    """

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        #: user -> runs in flight, for a concurrency limit.
        self._running: dict[str, int] = {}

    def _current(self, limit: Limit, start: int) -> _Window:
        """The window of ``limit`` starting at ``start``, dropping an older one."""
        window = self._windows.get(limit.name)
        if window is None or window.start < start:
            window = self._windows[limit.name] = _Window(start)
        return window

    def admit_now(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], tokens: int, cap: int = 0,
        slot: tuple[int, str] | None = None, quote: Quote | None = None,
    ) -> tuple[bool, list[int], int]:
        """Check every limit, then count the request and reserve its tokens and money; all or nothing.

        A token limit reserves ``tokens`` (the prompt) plus ``min(cap, what is left)``; with a
        ``cap``, at least one completion token must fit. A spend limit (nano-dollars) prices
        them with ``quote`` (``(prompt pico-dollars, pico-dollars per completion token)``): it
        needs room for the prompt (and one completion token with a ``cap``) and lowers the
        completion tokens granted to what its money left buys; it reserves the prompt's cost
        plus theirs. ``slot`` is ``(limit, id)`` for a concurrency limit: refused when the
        user already has ``limit`` runs in flight. Returns whether the request is admitted,
        each limit's usage after the decision, and the completion tokens granted (-1 when
        refused for the concurrency limit). A window older than the one kept (the clock went
        back) is counted in the kept one.
        """
        windows = self._windows
        used: list[int] = []
        current: list[_Window] = []
        allowed = True
        granted = cap
        need = tokens + 1 if cap > 0 else tokens
        prompt_picos, per_token = quote or (0, 0)
        money_need = nanos_of(prompt_picos + per_token) if cap > 0 else nanos_of(prompt_picos)
        for limit, start in zip(limits, starts):
            window = windows.get(limit.name)
            if window is None or window.start < start:
                window = windows[limit.name] = _Window(start)
            current.append(window)
            count = window.counts.get(user, 0)
            used.append(count)
            if limit.is_money:
                if count + money_need > limit.value:
                    allowed = False
                else:
                    granted = min(granted, affordable(limit.value - count, prompt_picos, per_token))
            elif not limit.is_token:
                if count >= limit.value:
                    allowed = False
            elif count + need > limit.value:
                allowed = False
            elif limit.value - count - tokens < granted:
                granted = limit.value - count - tokens
        if allowed and slot is not None and self._running.get(user, 0) >= slot[0]:
            return False, used, -1
        if not allowed:
            return False, used, 0
        spend = nanos_of(prompt_picos + granted * per_token)
        for index, window in enumerate(current):
            limit = limits[index]
            if limit.is_token or limit.is_money:
                cost = spend if limit.is_money else tokens + granted
                if cost:
                    window.reserved[user] = window.reserved.get(user, 0) + cost
            else:
                cost = 1
            window.counts[user] = used[index] = used[index] + cost
            window.total += cost
        if slot is not None:
            self._running[user] = self._running.get(user, 0) + 1
        return True, used, granted

    async def admit(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], tokens: int, now: float = 0.0,
        cap: int = 0, slot: tuple[int, str] | None = None, quote: Quote | None = None,
    ) -> tuple[bool, list[int], int]:
        """Awaitable form of :meth:`admit_now` (the store protocol)."""
        return self.admit_now(user, limits, starts, tokens, cap, slot, quote)

    async def settle(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], delta: int, reserved: int = 0,
        slot: str | None = None, money: tuple[int, int] = (0, 0),
    ) -> None:
        """Awaitable form of :meth:`settle_now` (the store protocol)."""
        self.settle_now(user, limits, starts, delta, reserved, slot, money)

    def settle_now(self, user: str, limits: Sequence[Limit], starts: Sequence[int], delta: int,
                   reserved: int = 0, slot: str | None = None, money: tuple[int, int] = (0, 0)) -> None:
        """Add ``delta`` tokens (may be negative; never below 0) to windows still kept, release
        the run's ``reserved`` tokens and its concurrency ``slot``; spend limits move by
        ``money = (delta, reserved)`` in nano-dollars instead."""
        for limit, start in zip(limits, starts):
            window = self._windows.get(limit.name)
            if window is None or window.start != start:
                continue
            count = window.counts.get(user)
            if count is None:
                continue
            change, held_back = money if limit.is_money else (delta, reserved)
            new = max(0, count + change)
            window.counts[user] = new
            window.total = max(0, window.total + new - count)
            held = window.reserved.get(user, 0) - held_back
            if held > 0:
                window.reserved[user] = held
            else:
                window.reserved.pop(user, None)
        if slot is not None:
            running = self._running.get(user, 0) - 1
            if running > 0:
                self._running[user] = running
            else:
                self._running.pop(user, None)

    async def usage(self, user: str, limits: Sequence[Limit], starts: Sequence[int]) -> list[int]:
        """Each limit's usage by ``user`` in its current window."""
        return [self._current(limit, start).counts.get(user, 0) for limit, start in zip(limits, starts)]

    async def user_figures(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int]
    ) -> tuple[list[int], list[int], int]:
        """Each limit's usage by ``user`` and the part of it reserved by runs in flight; and
        how many runs ``user`` has in flight (counted under a concurrency limit)."""
        current = [self._current(limit, start) for limit, start in zip(limits, starts)]
        return ([w.counts.get(user, 0) for w in current], [w.reserved.get(user, 0) for w in current],
                self._running.get(user, 0))

    async def window_stats(
        self, limits: Sequence[Limit], starts: Sequence[int]
    ) -> tuple[list[int], list[int], int, list[int]]:
        """Per limit: total used and users counted; users counted under any limit; and per
        limit the tokens reserved by runs in flight."""
        current = [self._current(limit, start) for limit, start in zip(limits, starts)]
        active: set[str] = set()
        for window in current:
            active.update(window.counts)
        return ([w.total for w in current], [len(w.counts) for w in current], len(active),
                [sum(w.reserved.values()) for w in current])

    def size(self) -> int:
        """How many (limit, user) counters are held: memory is proportional to it."""
        return sum(len(window.counts) for window in self._windows.values())

    async def aclose(self) -> None:
        """Drop every counter."""
        self._windows.clear()

    async def ping(self) -> None:
        """Memory always answers."""
