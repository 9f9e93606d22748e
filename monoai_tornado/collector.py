"""Python's cyclic garbage collector, set for a long-running server.

A finished request is freed by reference counting (``tests/test_no_cyclic_garbage.py`` holds
every front to it), so the cyclic collector finds little. With CPython's defaults it still
runs a young collection every 700 net allocations and a full one every hundred or so, and a
full one walks every object the server holds (some 40,000 after start): about 5 % of a
loaded server's CPU (bench/README.md). :func:`tune_for_serving` freezes what start-up made
(it lives as long as the process: no collection needs to walk it again) and collects the
young generation every 50,000 allocations; what a request leaves in a cycle by mischance
(an exception's traceback) is still collected, a little later.
"""
from __future__ import annotations

import gc

__all__ = ["SERVING_THRESHOLDS", "tune_for_serving"]

#: ``gc.set_threshold`` of a serving process: young generation, then the two older ones.
SERVING_THRESHOLDS = (50_000, 20, 20)


def tune_for_serving() -> None:
    """Freeze what exists now and space the collections out (``run`` calls it once the
    application is built; a process that embeds the handlers decides for itself)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_THRESHOLDS)
