"""Pieces of the Prometheus text exposition format that every metrics section writes alike."""
from __future__ import annotations

from typing import Iterator, Sequence


def escape_label(value: str) -> str:
    """A label value as the format quotes it: backslash, newline and double quote escaped."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def histogram_lines(name: str, labels: str, bounds: Sequence[float], counts: Sequence[int],
                    total: float) -> Iterator[str]:
    """A histogram's cumulative ``_bucket`` lines, its ``_sum`` and ``_count``. ``counts`` has one
    count more than ``bounds`` (over the last bound); ``labels``: the series' own ``key="value"``
    pairs joined by commas, or empty."""
    head = labels + "," if labels else ""
    tail = "{" + labels + "}" if labels else ""
    cumulative = 0
    for bound, count in zip(bounds, counts):
        cumulative += count
        yield f'{name}_bucket{{{head}le="{bound}"}} {cumulative}'
    cumulative += counts[-1]
    yield f'{name}_bucket{{{head}le="+Inf"}} {cumulative}'
    yield f"{name}_sum{tail} {total}"
    yield f"{name}_count{tail} {cumulative}"
