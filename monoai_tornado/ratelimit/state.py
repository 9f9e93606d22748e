"""One limit's figures after a decision (:class:`LimitState`): what the limiter reports, the
rate-limit headers show and a 429 (``errors.RateLimited``) carries. Its own module, importing
nothing of the limiter, so ``errors`` can name it without importing the limiter that raises them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .limits import Limit

__all__ = ["LimitState"]


@dataclass(slots=True)
class LimitState:
    """One limit's figures for a user after a decision; ``reset_in`` in seconds."""

    limit: Limit
    used: int
    remaining: int
    reset_in: float
