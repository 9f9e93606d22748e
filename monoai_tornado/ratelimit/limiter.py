"""The decision: admit or refuse a request under every limit at once, and settle its tokens.

Windows are fixed and aligned to the epoch (a window starts at ``floor(now / w) * w``). The
limiter computes them from its clock and leaves the counters to a store (:class:`MemoryStore`
or :class:`RedisStore`), which checks every limit before it counts anything, atomically.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol, Sequence, TypeVar, runtime_checkable

from ..errors import LimiterUnavailable, ModelNotPriced
from ..money.prices import Quote, nanos_of, usd
from .limits import Limit
from .memory import MemoryStore
from .state import LimitState

__all__ = ["Admission", "FastPath", "IdempotentStore", "Limiter", "LimitState", "RateLimiter", "Store", "StoreUnavailable"]

T = TypeVar("T")

log = logging.getLogger("monoai_tornado.ratelimit")


class StoreUnavailable(LimiterUnavailable):
    """A store could not be reached (connection refused or lost, timeout)."""


@runtime_checkable
class Store(Protocol):
    """What a limiter needs from a store; ``starts`` are the current window starts.

    ``admit`` checks every limit (and the user's runs in flight against a concurrency
    ``slot``), then counts and reserves, atomically; it answers whether the request is
    admitted, each limit's usage after the decision, and the completion tokens reserved
    (-1: refused for the concurrency limit). Spend limits (``limit.is_money``) count
    nano-dollars, priced by ``quote`` (see :mod:`monoai_tornado.money.prices`). ``settle``
    corrects a run's reservations to what it used (``money``: nano-dollars ``(delta,
    reserved)`` for spend limits) and releases them and its slot. A store that cannot be reached raises
    :class:`StoreUnavailable`.
    """

    async def admit(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], tokens: int, now: float,
        cap: int = 0, slot: tuple[int, str] | None = None, quote: Quote | None = None,
    ) -> tuple[bool, list[int], int]: ...

    async def settle(self, user: str, limits: Sequence[Limit], starts: Sequence[int], delta: int,
                     reserved: int = 0, slot: str | None = None, money: tuple[int, int] = (0, 0)) -> None: ...

    async def usage(self, user: str, limits: Sequence[Limit], starts: Sequence[int]) -> list[int]: ...

    async def user_figures(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int]
    ) -> tuple[list[int], list[int], int]: ...

    async def window_stats(
        self, limits: Sequence[Limit], starts: Sequence[int]
    ) -> tuple[list[int], list[int], int, list[int]]: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class FastPath(Protocol):
    """A store that decides and settles without waiting (the memory store): the limiter then
    spends no coroutine per request. Checked once, when the limiter is built."""

    def admit_now(
        self, user: str, limits: Sequence[Limit], starts: Sequence[int], tokens: int, cap: int = 0,
        slot: tuple[int, str] | None = None, quote: Quote | None = None,
    ) -> tuple[bool, list[int], int]: ...

    def settle_now(self, user: str, limits: Sequence[Limit], starts: Sequence[int], delta: int,
                   reserved: int = 0, slot: str | None = None, money: tuple[int, int] = (0, 0)) -> None: ...


@runtime_checkable
class IdempotentStore(Protocol):
    """A store whose admissions and settlements carry an id and count once per id, even when
    sent again after a lost reply (the Redis store). Checked once, when the limiter is built."""

    async def admit_once(
        self, admission_id: str, user: str, limits: Sequence[Limit], starts: Sequence[int], tokens: int,
        now: float, cap: int = 0, slot: tuple[int, str] | None = None, quote: Quote | None = None,
    ) -> tuple[bool, list[int], int]: ...

    async def settle_once(
        self, admission_id: str, user: str, limits: Sequence[Limit], starts: Sequence[int], delta: int,
        reserved: int = 0, slot: str | None = None, money: tuple[int, int] = (0, 0),
    ) -> None: ...


@dataclass(slots=True)
class Admission:
    """The answer to :meth:`RateLimiter.admit`.

    ``retry_after`` is the whole seconds until the exhausted windows reset (0 when allowed);
    ``reserved_tokens`` the tokens held against the token limits until
    :meth:`RateLimiter.settle` (the prompt's plus ``max_tokens``); ``max_tokens`` the
    completion tokens the run may make under the token limits (None when none applies);
    ``too_many_concurrent`` marks a refusal for the concurrency limit, ``spend_limited`` one
    for a spend limit; ``reserved_nanos`` the nano-dollars held against the spend limits (None
    when none applies); ``degraded`` a request let through unchecked because the store was
    down (fail open).
    """

    allowed: bool
    user: str
    states: list[LimitState]
    retry_after: int
    reserved_tokens: int
    degraded: bool = False
    _starts: Sequence[int] = field(default=(), repr=False)
    _settled: bool = field(default=False, repr=False)
    #: The limits the request was held to (the limiter's own, or those passed to ``admit``).
    _policy: "_Policy | None" = field(default=None, repr=False)
    max_tokens: int | None = None
    too_many_concurrent: bool = False
    #: The run's concurrency slot, released when it is settled.
    _slot: str | None = field(default=None, repr=False)
    spend_limited: bool = False
    reserved_nanos: int | None = None
    #: The admission's id in an :class:`IdempotentStore` ("" elsewhere): its settle counts once.
    id: str = ""

    @property
    def holds_tokens(self) -> bool:
        """Whether token limits held the request (``reserved_tokens`` is then its token budget)."""
        return self._policy is not None and bool(self._policy.token_limits)


class _Policy:
    """A set of limits with what every admission derives from them, computed once."""

    __slots__ = ("limits", "windows", "token_indexes", "token_limits", "current", "calendar", "money_indexes",
                 "held_indexes", "held_limits")

    def __init__(self, limits: Sequence[Limit]) -> None:
        self.limits: tuple[Limit, ...] = tuple(limits)
        for limit in self.limits:
            if not isinstance(limit, Limit):
                raise TypeError(f"limits must be Limit objects, not {limit!r}")
        names = [limit.name for limit in self.limits]
        if len(set(names)) != len(names):
            raise ValueError(f"limit names must be unique, got {names}")
        self.windows = tuple(limit.window_seconds for limit in self.limits)
        self.token_indexes = tuple(i for i, limit in enumerate(self.limits) if limit.is_token)
        self.token_limits = tuple(self.limits[i] for i in self.token_indexes)
        #: Spend limits (nano-dollars), and every limit a run holds a reservation in (token, spend).
        self.money_indexes = tuple(i for i, limit in enumerate(self.limits) if limit.is_money)
        self.held_indexes = tuple(i for i, limit in enumerate(self.limits) if limit.is_token or limit.is_money)
        self.held_limits = tuple(self.limits[i] for i in self.held_indexes)
        self.calendar = any(limit.calendar for limit in self.limits)
        # Window starts and ends change once a second at most: computed once per second.
        self.current = self.windows_at(-1)

    def windows_at(self, second: int) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """``(second, window starts, window ends)`` of every limit at that whole second."""
        if self.calendar:
            starts = tuple(limit.window_start(second) for limit in self.limits)
            return second, starts, tuple(limit.window_end(start) for limit, start in zip(self.limits, starts))
        starts = tuple(second - second % window for window in self.windows)
        return second, starts, tuple(start + window for start, window in zip(starts, self.windows))

    def windows_now(self, second: int) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        windows = self.current
        if windows[0] != second:
            windows = self.current = self.windows_at(second)
        return windows


@runtime_checkable
class Limiter(Protocol):
    """What the server needs from a rate limiter (:class:`RateLimiter` is one); an
    ``Application`` checks it once, when it is built."""

    async def admit(self, user: str, prompt_tokens: int = 0, limits: Sequence[Limit] | None = None, *,
                    max_tokens: int = 0, quote: Quote | None = None) -> Admission: ...

    def settle_now(self, admission: Admission, total_tokens: int, cost_nanos: int = 0) -> bool: ...

    async def settle(self, admission: Admission, total_tokens: int, cost_nanos: int = 0) -> None: ...

    async def stats(self) -> dict[str, Any]: ...

    async def user_stats(self, user: str, limits: Sequence[Limit] | None = None) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...

    async def check(self) -> bool: ...

    def describe(self) -> str: ...

    @property
    def fail_open(self) -> bool: ...

    @property
    def limits(self) -> list[Limit]:
        """The default limits (an API key's own replace them for its requests)."""


class RateLimiter:
    """Holds users to several :class:`Limit` at once; one atomic admission per request.

    Example (in a coroutine)::

        limiter = RateLimiter([Limit("request", 10, "minute"), Limit("token", 10_000, "hour")])
        admission = await limiter.admit("alice", prompt_tokens=42)
        ...  # run the model when admission.allowed
        await limiter.settle(admission, total_tokens=180)

    ``admit(user, tokens, limits=...)`` holds one request to other limits than the limiter's
    own (an API key's), through the same store and the same single decision.

    When the store cannot be reached, :meth:`admit` raises :class:`LimiterUnavailable` (503),
    or with ``fail_open=True`` admits the request unchecked (``degraded=True``). An outage is
    logged once when it starts and once when the store answers again.
    """

    def __init__(
        self,
        limits: Sequence[Limit],
        store: Store | None = None,
        *,
        clock: Callable[[], float] = time.time,
        fail_open: bool = False,
        concurrency_limit: int | None = None,
    ) -> None:
        if concurrency_limit is not None and concurrency_limit < 1:
            raise ValueError(f"concurrency_limit must be >= 1, not {concurrency_limit}")
        #: Runs a user may have in flight at once (None: any number).
        self.concurrency_limit = concurrency_limit
        self._slot_ids = itertools.count(1)
        self._slot_prefix = f"{os.getpid()}-{secrets.token_hex(4)}:"
        self._policy = _Policy(limits)
        self._limits = self._policy.limits
        #: Policies of limits passed to :meth:`admit`, by their limits (few: one per key's set).
        self._policies: dict[tuple[Limit, ...], _Policy] = {}
        self._store: Store = MemoryStore() if store is None else store
        if not isinstance(self._store, Store):
            raise TypeError(f"store must have the Store methods (admit, settle, usage, window_stats, aclose), "
                            f"not {type(self._store).__name__}")
        self._clock = clock
        self.fail_open = fail_open
        # The memory store decides synchronously: skip a coroutine on the hot path.
        self._fast: FastPath | None = self._store if isinstance(self._store, FastPath) else None
        self._once: IdempotentStore | None = self._store if isinstance(self._store, IdempotentStore) else None
        self._outage = False

    @property
    def limits(self) -> list[Limit]:
        """The limits every request is held to."""
        return list(self._limits)

    def replace_limits(self, limits: Sequence[Limit]) -> None:
        """Hold requests to ``limits`` from now on (a configuration reload); admissions already
        made settle under the limits they were admitted with. ValueError for duplicate names."""
        policy = _Policy(limits)
        self._policy, self._limits = policy, policy.limits

    @property
    def store(self) -> Store:
        """Where the counters live."""
        return self._store

    def _policy_for(self, limits: Sequence[Limit] | None) -> _Policy:
        """The limiter's own policy (``limits`` None), else the one of ``limits``, made once."""
        if limits is None:
            return self._policy
        key = tuple(limits)
        policy = self._policies.get(key)
        if policy is None:
            if len(self._policies) >= 1024:  # bounded, whatever callers pass
                self._policies.clear()
            policy = self._policies[key] = _Policy(key)
        return policy

    async def admit(self, user: str, prompt_tokens: int = 0, limits: Sequence[Limit] | None = None, *,
                    max_tokens: int = 0, quote: Quote | None = None) -> Admission:
        """Admit or refuse one request of ``user`` whose prompt has ``prompt_tokens`` tokens and
        whose answer may have up to ``max_tokens``, priced by ``quote`` (``Prices.quote``).

        Refused when a request limit is full, when a token limit has no room for the prompt
        (and, with ``max_tokens``, one completion token), or when the user already has
        ``concurrency_limit`` runs in flight; then nothing is counted. Admitted: every request
        counter gets 1, every token counter reserves the prompt plus ``min(max_tokens, what
        is left)`` (``admission.max_tokens``), and the run takes a slot until it is settled.
        ``limits``, when given, replace the limiter's own for this request (an API key's).
        Spend limits reserve the prompt's cost plus that of the completion tokens granted,
        which are no more than the money left buys; without a ``quote`` they refuse the request
        (:class:`ModelNotPriced`, 403): its spend could not be held.
        """
        if prompt_tokens < 0 or max_tokens < 0:
            raise ValueError(f"tokens must not be negative, not {prompt_tokens}, {max_tokens}")
        policy = self._policy if limits is None else self._policy_for(limits)
        if policy.money_indexes and quote is None:
            raise ModelNotPriced("This model has no prices, so it cannot be used under a spend limit")
        if not policy.limits and self.concurrency_limit is None:  # nothing to hold the request to
            return Admission(True, user, [], 0, 0, False, _policy=policy)
        now = self._clock()
        _, starts, ends = policy.windows_now(int(now))
        limits = policy.limits
        slot = None if self.concurrency_limit is None else (
            self.concurrency_limit, f"{self._slot_prefix}{next(self._slot_ids)}")
        fast = self._fast
        quote = quote if policy.money_indexes else None
        priced = () if quote is None else (quote,)  # stores written before spend limits take no quote
        # Never the request id: a client picks that one, and a repeated id would not count again.
        admission_id = "" if self._once is None else uuid.uuid4().hex
        if fast is not None:
            allowed, used, granted = fast.admit_now(user, limits, starts, prompt_tokens, max_tokens, slot, *priced)
        else:
            try:
                if self._once is not None:
                    allowed, used, granted = await self._once.admit_once(
                        admission_id, user, limits, starts, prompt_tokens, now, max_tokens, slot, quote)
                else:
                    allowed, used, granted = await self._store.admit(
                        user, limits, starts, prompt_tokens, now, max_tokens, slot, *priced)
            except StoreUnavailable as exc:
                self._failed(exc)
                if self.fail_open:
                    return Admission(True, user, [], 0, 0, True, _policy=policy)
                raise LimiterUnavailable("rate limiter store unavailable") from exc
            if self._outage:
                self._recovered()
        states = []
        for limit, end, count in zip(limits, ends, used):
            value = limit.value
            states.append(LimitState(limit, count, value - count if count < value else 0, end - now))
        if allowed:
            capped = bool(policy.token_limits or quote)
            spend = None if quote is None else nanos_of(quote[0] + granted * quote[1])
            return Admission(True, user, states, 0, prompt_tokens + granted if capped else prompt_tokens, False,
                             starts, _policy=policy, max_tokens=granted if capped else None,
                             _slot=slot[1] if slot is not None else None, reserved_nanos=spend, id=admission_id)
        if granted < 0:
            return Admission(False, user, states, 0, 0, False, starts, _policy=policy, too_many_concurrent=True)
        retry = 0.0
        need = prompt_tokens + 1 if max_tokens else prompt_tokens
        prompt_picos, per_token = quote or (0, 0)
        money_need = nanos_of(prompt_picos + per_token if max_tokens else prompt_picos)
        spent_out = False
        for state in states:
            cost = money_need if state.limit.is_money else need if state.limit.is_token else 1
            if state.used + cost > state.limit.value:
                spent_out = spent_out or state.limit.is_money
                retry = max(retry, state.reset_in)
        return Admission(False, user, states, math.ceil(retry), 0, False, starts, _policy=policy,
                         spend_limited=spent_out)

    def _settlement(
        self, admission: Admission, total_tokens: int, cost_nanos: int = 0
    ) -> tuple[Any, ...] | None:
        """What a settle must send the store (limits, starts, delta, reserved, slot, and money
        under spend limits), or None when nothing; marks the admission settled."""
        if not admission.allowed or admission.degraded or admission._settled:
            return None
        admission._settled = True
        policy = admission._policy or self._policy
        slot = admission._slot
        if not policy.held_limits:
            return None if slot is None else ((), [], 0, 0, slot)
        reserved = admission.reserved_tokens
        delta = total_tokens - reserved
        held = admission.reserved_nanos or 0
        money = (cost_nanos - held, held) if policy.money_indexes else (0, 0)
        if delta == 0 and reserved == 0 and slot is None and money == (0, 0):
            return None
        starts = [admission._starts[i] for i in policy.held_indexes]
        if not policy.money_indexes:
            return policy.held_limits, starts, delta, reserved, slot
        return policy.held_limits, starts, delta, reserved, slot, money

    def settle_now(self, admission: Admission, total_tokens: int, cost_nanos: int = 0) -> bool:
        """Settle at once when the store can without waiting (memory); False means use :meth:`settle`."""
        fast = self._fast
        if fast is None:
            return False
        settlement = self._settlement(admission, total_tokens, cost_nanos)
        if settlement is not None:
            fast.settle_now(admission.user, *settlement)
        return True

    async def settle(self, admission: Admission, total_tokens: int, cost_nanos: int = 0) -> None:
        """Record the tokens (and, under spend limits, the nano-dollars) a run really used
        (finished, failed or cancelled alike).

        The token counters of the admission's windows move by ``total_tokens`` minus the
        reservation (never below 0), the spend counters by ``cost_nanos`` minus theirs, the
        reservations are released, and so is the run's concurrency slot. Refused, degraded
        and already settled admissions are left alone; so are windows that have ended. A store
        failure here is part of the outage (logged once) and the correction is lost (a slot
        then frees itself when it expires).
        """
        settlement = self._settlement(admission, total_tokens, cost_nanos)
        if settlement is None:
            return
        try:
            if self._once is not None and admission.id:
                await self._once.settle_once(admission.id, admission.user, *settlement)
            else:
                await self._store.settle(admission.user, *settlement)
        except StoreUnavailable as exc:
            self._failed(exc)
            return
        if self._outage:
            self._recovered()

    async def _read(self, reading: Awaitable[T]) -> T:
        try:
            result = await reading
        except StoreUnavailable as exc:
            self._failed(exc)
            raise LimiterUnavailable("rate limiter store unavailable") from exc
        if self._outage:
            self._recovered()
        return result

    async def user_stats(self, user: str, limits: Sequence[Limit] | None = None) -> dict[str, Any]:
        """``user``'s usage, remaining and seconds to reset per limit, in the current windows.

        ``limits``, when given, are the ones to report instead of the limiter's own.
        """
        policy = self._policy_for(limits)
        now = self._clock()
        _, starts, ends = policy.windows_at(int(now))
        used, held, running = await self._read(self._store.user_figures(user, policy.limits, starts))
        usage: dict[str, int] = {}
        remaining: dict[str, int] = {}
        reset_in: dict[str, float] = {}
        reserved: dict[str, int] = {}
        spend: dict[str, dict[str, float]] = {}
        for limit, end, count, holds in zip(policy.limits, ends, used, held):
            if limit.is_money:
                spend[limit.name] = {"used_usd": usd(count - holds), "reserved_usd": usd(holds),
                                     "left_usd": usd(max(0, limit.value - count)), "reset_in": round(end - now, 3)}
                continue
            usage[limit.name] = count
            remaining[limit.name] = max(0, limit.value - count)
            reset_in[limit.name] = round(end - now, 3)
            reserved[limit.name] = holds
        stats: dict[str, Any] = {"user_id": user, "usage": usage, "remaining": remaining, "reset_in": reset_in,
                                 "reserved": reserved}
        if self.concurrency_limit is not None:
            stats["concurrency"] = {"limit": self.concurrency_limit, "in_flight": running}
        if spend:
            stats["spend"] = spend
        return stats

    async def stats(self) -> dict[str, Any]:
        """The limits, users active in the current windows, and totals (the whole fleet's on Redis).

        ``totals`` are the figures of the request (token) limit that counted the most, which
        is the longest window when several nest; ``windows`` details every limit.
        """
        now = self._clock()
        _, starts, ends = self._policy.windows_at(int(now))
        totals, users, active, reserved = await self._read(self._store.window_stats(self._limits, starts))
        windows = {
            limit.name: {"used": total, "reserved": held, "users": count, "reset_in": round(end - now, 3)}
            for limit, end, total, count, held in zip(self._limits, ends, totals, users, reserved)
            if not limit.is_money
        }
        spend = {
            limit.name: {"used_usd": usd(total - held), "reserved_usd": usd(held), "users": count,
                         "reset_in": round(end - now, 3)}
            for limit, end, total, count, held in zip(self._limits, ends, totals, users, reserved) if limit.is_money
        }
        requests = [total for limit, total in zip(self._limits, totals) if limit.unit == "request"]
        tokens = [(total, held) for limit, total, held in zip(self._limits, totals, reserved) if limit.is_token]
        most = max(tokens, default=(0, 0))
        return {
            "limits": [limit.to_dict() for limit in self._limits],
            "concurrency_limit": self.concurrency_limit,
            "active_users": active,
            "totals": {"requests": max(requests, default=0), "tokens": most[0]},
            "reserved_tokens": most[1],
            "windows": windows,
            **({"spend": spend} if spend else {}),
        }

    def describe(self) -> str:
        """One line: the limits and the store, e.g. ``RateLimiter(10-per-60; MemoryStore)``."""
        names = ", ".join(limit.name for limit in self._limits)
        return f"RateLimiter({names}; {type(self._store).__name__})"

    @property
    def available(self) -> bool:
        """False from a failed call to the store until one succeeds again."""
        return not self._outage

    async def check(self) -> bool:
        """Ask the store whether it answers now; an outage is logged as admissions log it."""
        try:
            await self._read(self._store.ping())
        except LimiterUnavailable:
            return False
        return True

    async def watch(self, interval: float = 1.0) -> None:
        """Check the store now (a warning names it and the error when it does not answer), and
        again every ``interval`` seconds until it does; started when a server starts."""
        while not await self.check():
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        """Release the store (its connections, for Redis)."""
        await self._store.aclose()

    def _failed(self, exc: BaseException) -> None:
        if not self._outage:
            self._outage = True
            action = "letting requests through unchecked" if self.fail_open else "refusing requests (503)"
            log.warning("rate limiter store unavailable (%s); %s until it answers again", exc, action)

    def _recovered(self) -> None:
        self._outage = False
        log.info("rate limiter store available again")
