"""Backend events as a test compares them: the texts of a :class:`TextDeltas` (the pieces of one
upstream read, handed over together) as a :class:`TextDelta` each."""
from __future__ import annotations

from typing import Iterable

from monoai_tornado.backends.base import BackendEvent, TextDelta, TextDeltas


def pieces(events: Iterable[BackendEvent]) -> list[BackendEvent]:
    """``events`` with every :class:`TextDeltas` spelled out as its pieces, in order."""
    flat: list[BackendEvent] = []
    for event in events:
        if isinstance(event, TextDeltas):
            flat.extend(TextDelta(text) for text in event.texts)
        else:
            flat.append(event)
    return flat
