"""The in-memory store: counters of one process, the embedded default.

Each limit keeps only its current window (a dict of user -> count and the window's total);
when a later window starts, the old one is dropped whole, so memory is bounded by the users
active in the current windows. Every method runs without an ``await`` between check and
increment, which makes each decision atomic on one event loop without locks.
"""
from __future__ import annotations

from typing import Sequence

from .limits import Limit

__all__ = ["MemoryStore"]


class _Window:
    """The counters of one limit's current window."""

    __slots__ = ("start", "counts", "total")

    def __init__(self, start: int) -> None:
        self.start = start
        self.counts: dict[str, int] = {}
        self.total = 0


class MemoryStore:
    """Counters for one process; pass several processes a :class:`RedisStore` instead.

    >>> limiter = RateLimiter([Limit("request", 10, "minute")], MemoryStore())

    A store serves the limits of one limiter: windows are kept per limit name.
    """

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

    def _current(self, limit: Limit, start: int) -> _Window:
        """The window of ``limit`` starting at ``start``, dropping an older one."""
        window = self._windows.get(limit.name)
        if window is None or window.start < start:
            window = self._windows[limit.name] = _Window(start)
        return window

    def admit_now(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], tokens: int
    ) -> tuple[bool, list[int]]:
        """Check every limit, then count the request and reserve ``tokens``; all or nothing.

        Returns whether the request is admitted and each limit's usage after the decision.
        A window older than the one kept (the clock went back) is counted in the kept one.
        """
        windows = self._windows
        used: list[int] = []
        current: list[_Window] = []
        allowed = True
        for limit, start in zip(limits, starts):
            window = windows.get(limit.name)
            if window is None or window.start < start:
                window = windows[limit.name] = _Window(start)
            current.append(window)
            count = window.counts.get(user, 0)
            used.append(count)
            if count + (tokens if limit.is_token else 1) > limit.value:
                allowed = False
        if allowed:
            for index, window in enumerate(current):
                cost = tokens if limits[index].is_token else 1
                window.counts[user] = used[index] = used[index] + cost
                window.total += cost
        return allowed, used

    async def admit(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], tokens: int, now: float = 0.0
    ) -> tuple[bool, list[int]]:
        """Awaitable form of :meth:`admit_now` (the store protocol)."""
        return self.admit_now(user, limits, starts, tokens)

    async def settle(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], delta: int
    ) -> None:
        """Awaitable form of :meth:`settle_now` (the store protocol)."""
        self.settle_now(user, limits, starts, delta)

    def settle_now(self, user: str, limits: Sequence[Limit], starts: Sequence[int], delta: int) -> None:
        """Add ``delta`` tokens (may be negative; never below 0) to windows still kept."""
        for limit, start in zip(limits, starts):
            window = self._windows.get(limit.name)
            if window is None or window.start != start:
                continue
            count = window.counts.get(user)
            if count is None:
                continue
            new = max(0, count + delta)
            window.counts[user] = new
            window.total = max(0, window.total + new - count)

    async def usage(self, user: str, limits: Sequence[Limit], starts: Sequence[int]) -> list[int]:
        """Each limit's usage by ``user`` in its current window."""
        return [self._current(limit, start).counts.get(user, 0) for limit, start in zip(limits, starts)]

    async def window_stats(
        self, limits: Sequence[Limit], starts: Sequence[int]
    ) -> tuple[list[int], list[int], int]:
        """Per limit: total used and users counted; and users counted under any limit."""
        current = [self._current(limit, start) for limit, start in zip(limits, starts)]
        active: set[str] = set()
        for window in current:
            active.update(window.counts)
        return [w.total for w in current], [len(w.counts) for w in current], len(active)

    def size(self) -> int:
        """How many (limit, user) counters are held: memory is proportional to it."""
        return sum(len(window.counts) for window in self._windows.values())

    async def aclose(self) -> None:
        """Drop every counter."""
        self._windows.clear()

    async def ping(self) -> None:
        """Memory always answers."""
