"""A deployment as the router sees it: its configuration, its backend and its live state.

State is per process (in flight, cooldown, latency, disabled); ``rpm`` / ``tpm`` are counted in
the limiter's store (:mod:`monoai_tornado.routing.slots`), so they hold across processes.
"""
from __future__ import annotations

import bisect
import math
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from ..backends.base import Backend
from ..config import DeploymentConfig
from ..metrics import LATENCY_BUCKETS
from ..money.prices import prices_of_config
from ..ratelimit import RateLimiter

#: Weight of the newest sample in the latency average (EWMA).
LATENCY_ALPHA = 0.2

State = Literal["ok", "cooldown", "disabled"]
#: What an attempt on a deployment ended as (a metrics label).
Outcome = Literal["ok", "failure", "rate_limited", "timeout", "rejected", "unauthorized", "error_after_start"]


#: What an id keeps as it is in a header: printable ASCII but the escape character.
_HEADER_SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")


def header_value(ident: str) -> str:
    """``ident`` as a header value: as it is when it is printable ASCII, else percent-encoded as
    UTF-8 (``chat-✓`` is sent as ``chat-%E2%9C%93``: a header carries no other character safely)."""
    if ident.isascii() and ident.isprintable():
        return ident
    return urllib.parse.quote(ident, safe=_HEADER_SAFE)


class Histogram:
    """Counts of observations under each of :data:`LATENCY_BUCKETS` (seconds), and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds


@dataclass(slots=True)
class DeploymentStats:
    """Per-deployment figures for the metrics (this process)."""

    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    first_token: Histogram = field(default_factory=Histogram)
    duration: Histogram = field(default_factory=Histogram)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Deployment:
    """One replica of a model: where calls go, and whether it may take one now."""

    __slots__ = ("config", "id", "header_value", "name", "backend", "weight", "max_concurrent", "limiter",
                 "in_flight", "cooling_until", "cooled_by_failure", "_disabled", "available_at", "latency", "next_probe",
                 "stats", "prices")

    def __init__(self, config: DeploymentConfig, backend: Backend, limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.id = config.id
        #: The id as the ``X-MonoAI-Deployment`` header carries it (:func:`header_value`).
        self.header_value = header_value(config.id)
        self.name = config.name
        self.backend = backend
        self.weight = config.weight
        self.max_concurrent = config.max_concurrent
        #: Holds ``rpm`` / ``tpm`` (None: neither is set).
        self.limiter = limiter
        self.in_flight = 0
        #: ``time.monotonic()`` until which the deployment is left out (0: not cooling down);
        #: changed by :meth:`cool_down` and :meth:`rejoin` only, which keep ``available_at``.
        self.cooling_until = 0.0
        #: Cooled down by a failure (rejoins after a probe), not by a 429 (rejoins when it ends);
        #: changed likewise.
        self.cooled_by_failure = False
        self._disabled = False
        #: ``time.monotonic()`` from which it may take calls: 0 when usable, the end of a 429's
        #: cooldown, infinity when disabled or cooled down by a failure (until a probe): what
        #: :meth:`usable` compares, kept by the methods that change the state.
        self.available_at = 0.0
        #: Recent time to first token, seconds (EWMA; 0 until measured).
        self.latency = 0.0
        self.next_probe = 0.0
        self.stats = DeploymentStats()
        #: What a call answered here bills (None: unpriced), converted once.
        self.prices = prices_of_config(config)

    def __repr__(self) -> str:
        return f"Deployment({self.id!r}, in_flight={self.in_flight}, state={self.state()!r})"

    def usable(self, now: float) -> bool:
        """Neither disabled nor cooling down at ``now`` (monotonic)."""
        return now >= self.available_at

    def _update_availability(self) -> None:
        self.available_at = math.inf if self._disabled or self.cooled_by_failure else self.cooling_until

    @property
    def disabled(self) -> bool:
        """Refused our credentials (401/403): left out until the next reload (:meth:`disable`)."""
        return self._disabled

    def disable(self) -> None:
        """Left out until the configuration is reloaded (it refused our credentials)."""
        self._disabled = True
        self._update_availability()

    def has_room(self) -> bool:
        return self.max_concurrent is None or self.in_flight < self.max_concurrent

    def state(self, now: float | None = None) -> State:
        if self.disabled:
            return "disabled"
        return "ok" if self.usable(time.monotonic() if now is None else now) else "cooldown"

    def cool_down(self, seconds: float, *, failure: bool) -> None:
        """Leave the deployment out for ``seconds``; after a failure it rejoins only on a probe."""
        now = time.monotonic()
        self.cooling_until = max(self.cooling_until, now + seconds)
        self.cooled_by_failure = self.cooled_by_failure or failure
        self.next_probe = self.cooling_until
        self._update_availability()

    def rejoin(self) -> None:
        self.cooling_until = 0.0
        self.cooled_by_failure = False
        self._update_availability()

    def observe_first_token(self, seconds: float) -> None:
        self.latency = seconds if self.latency == 0.0 else self.latency + LATENCY_ALPHA * (seconds - self.latency)
        self.stats.first_token.observe(seconds)

    def describe(self, detailed: bool, now: float) -> dict[str, object]:
        """This deployment in ``GET /health`` (``detailed``: with in flight and latency)."""
        shown: dict[str, object] = {"id": self.id, "state": self.state(now)}
        if detailed:
            shown["in_flight"] = self.in_flight
            shown["latency_ms"] = round(self.latency * 1000, 1)
        return shown
