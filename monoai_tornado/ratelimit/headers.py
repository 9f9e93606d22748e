"""Rate-limit response headers: OpenAI-style ``x-ratelimit-*`` and the IETF draft's fields.

For the tightest request limit and the tightest token limit (least remaining; on a tie the
one that resets first)::

    x-ratelimit-limit-requests: 10        x-ratelimit-limit-tokens: 10000
    x-ratelimit-remaining-requests: 3     x-ratelimit-remaining-tokens: 9042
    x-ratelimit-reset-requests: 42        x-ratelimit-reset-tokens: 1800
    RateLimit-Policy: "10-per-60";q=10;w=60, "10000-tokens-per-3600";q=10000;w=3600
    RateLimit: "10-per-60";r=3;t=42, "10000-tokens-per-3600";r=9042;t=1800

(draft-ietf-httpapi-ratelimit-headers: ``q`` quota, ``w`` window, ``r`` remaining, ``t``
seconds to reset). Resets are whole seconds, rounded up.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

from .limits import Limit
from .state import LimitState

__all__ = ["RATE_LIMIT_HEADERS", "rate_limit_headers"]

#: Every rate-limit header an answer may carry, with its meaning (OpenAPI and CORS derive from it).
RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "Requests allowed in the tightest request window.",
    "x-ratelimit-remaining-requests": "Requests left in that window.",
    "x-ratelimit-reset-requests": "Seconds until that window resets.",
    "x-ratelimit-limit-tokens": "Tokens allowed in the tightest token window.",
    "x-ratelimit-remaining-tokens": "Tokens left in that window.",
    "x-ratelimit-reset-tokens": "Seconds until that window resets.",
    "RateLimit-Policy": 'IETF draft field, e.g. "10-per-60";q=10;w=60',
    "RateLimit": 'IETF draft field, e.g. "10-per-60";r=3;t=42',
}


@functools.lru_cache(maxsize=1024)
def _sf_string(text: str) -> str:
    """``text`` as a structured-field string (RFC 8941): printable ASCII, quoted, escaped."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=64)
def _policy(limits: tuple[Limit, ...]) -> str:
    return ", ".join(f"{_sf_string(limit.name)};q={limit.value};w={limit.window_seconds}" for limit in limits)


#: Header names by unit: (limit, remaining, reset).
_NAMES: dict[bool, tuple[str, ...]] = {
    is_token: tuple(name for name in RATE_LIMIT_HEADERS if name.endswith("-tokens" if is_token else "-requests"))
    for is_token in (False, True)
}


def rate_limit_headers(states: Sequence[LimitState]) -> dict[str, str]:
    """The headers for a decision's limit states; an empty dict when there are none.

    Built once per admitted request, so it is one pass with the constant parts cached.
    """
    if any(state.limit.is_money for state in states):  # spend limits are told by the stats, not here
        states = [state for state in states if not state.limit.is_money]
    if not states:
        return {}
    # The tightest limit of each unit: least remaining, then the one that resets first.
    tightest: dict[bool, LimitState] = {}
    for candidate in states:
        best = tightest.get(candidate.limit.is_token)
        if best is None or (candidate.remaining, candidate.reset_in) < (best.remaining, best.reset_in):
            tightest[candidate.limit.is_token] = candidate
    headers: dict[str, str] = {}
    current: list[str] = []
    for is_token in (False, True):
        state = tightest.get(is_token)
        if state is None:
            continue
        reset = str(max(0, math.ceil(state.reset_in)))
        remaining = str(state.remaining)
        limit_name, remaining_name, reset_name = _NAMES[is_token]
        headers[limit_name] = str(state.limit.value)
        headers[remaining_name] = remaining
        headers[reset_name] = reset
        current.append(f"{_sf_string(state.limit.name)};r={remaining};t={reset}")
    headers["RateLimit-Policy"] = _policy(tuple(s.limit for s in states))
    headers["RateLimit"] = ", ".join(current)
    return headers
