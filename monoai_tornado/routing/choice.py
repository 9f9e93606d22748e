"""Choosing one deployment among those able to take a call: one pure function per strategy.

Each takes the candidates (never empty) and what makes the choice (a turn counter, a random
number in [0, 1)), reads only ``in_flight``, ``latency`` and ``weight``, and costs a few
microseconds for a handful of replicas (``bench/gateway.py`` measures it).

>>> from types import SimpleNamespace as D
>>> a, b = D(id="a", in_flight=2, latency=0.1, weight=1), D(id="b", in_flight=1, latency=0.5, weight=3)
>>> least_busy([a, b]).id, weighted([a, b], 0.2).id, weighted([a, b], 0.3).id, round_robin([a, b], 3).id
('b', 'a', 'b', 'b')
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence, TypeVar


class Candidate(Protocol):
    @property
    def in_flight(self) -> int: ...

    @property
    def latency(self) -> float: ...

    @property
    def weight(self) -> float: ...


C = TypeVar("C", bound=Candidate)


def least_busy(candidates: Sequence[C], turn: int = 0, draw: float = 0.0) -> C:
    """Fewest calls in flight; ties go to the lower recent latency, then to the turn's order
    (so equal idle replicas share the load rather than the first taking it all)."""
    count = len(candidates)
    best = candidates[turn % count]
    for offset in range(1, count):
        other = candidates[(turn + offset) % count]
        if other.in_flight < best.in_flight or (
                other.in_flight == best.in_flight and other.latency < best.latency):
            best = other
    return best


def weighted(candidates: Sequence[C], draw: float, turn: int = 0) -> C:
    """At random, in proportion to ``weight`` (``draw`` uniform in [0, 1))."""
    point = draw * sum(candidate.weight for candidate in candidates)
    for candidate in candidates:
        point -= candidate.weight
        if point < 0:
            return candidate
    return candidates[-1]


def round_robin(candidates: Sequence[C], turn: int, draw: float = 0.0) -> C:
    """Each in turn."""
    return candidates[turn % len(candidates)]


def chooser(strategy: str) -> Callable[[Sequence[C], int, float], C]:
    """The choice function of ``strategy``, called as ``choose(candidates, turn, draw)``."""
    if strategy == "weighted":
        return lambda candidates, turn, draw: weighted(candidates, draw)
    if strategy == "round-robin":
        return round_robin
    return least_busy
