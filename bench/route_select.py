"""Microseconds per deployment choice of the router (``ModelRoute.select`` and a whole
``acquire`` + ``release``), per strategy and number of replicas: the router's cost per call.

    .venv/bin/python bench/route_select.py
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from monoai_tornado.backends.demo import DemoBackend  # noqa: E402
from monoai_tornado.config import DeploymentConfig  # noqa: E402
from monoai_tornado.routing.slots import ModelRoute  # noqa: E402
from monoai_tornado.routing.state import Deployment  # noqa: E402

CALLS = 200_000


def route(strategy: str, replicas: int) -> ModelRoute:
    deployments = [Deployment(DeploymentConfig("m", f"m#{i}", backend="demo", weight=1 + i), DemoBackend())
                   for i in range(replicas)]
    return ModelRoute("m", deployments, (), strategy, 0.0)


async def acquire_release(model: ModelRoute, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        slot = await model.acquire(set(), lambda: 0)
        assert slot is not None
        model.release(slot)
    return time.perf_counter() - started


def main() -> None:
    print(f"{'strategy':12} {'replicas':>8} {'select us':>10} {'acquire+release us':>19}")
    for strategy in ("least-busy", "weighted", "round-robin"):
        for replicas in (2, 3, 8):
            model = route(strategy, replicas)
            empty: frozenset[str] = frozenset()
            now = time.monotonic()
            started = time.perf_counter()
            for _ in range(CALLS):
                model.select(empty, now)
            select = (time.perf_counter() - started) / CALLS * 1e6
            whole = asyncio.run(acquire_release(model, CALLS // 4)) / (CALLS // 4) * 1e6
            print(f"{strategy:12} {replicas:8d} {select:10.2f} {whole:19.2f}")


if __name__ == "__main__":
    main()
