"""Two of ``gateway.py``'s servers pinned to one core and loaded at once (``ab_cpu.py``, ``ab_profile.py``).

Whatever slows the machine (another tenant, the CPU's clock) slows both alike, so what differs
between them is the servers', not the minute's. Only 127.0.0.1 is contacted; every load is
bounded in time; the servers are stopped whatever happens.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

from common import HOST
from gateway import GatewayServer, Setup, Shape, pinned, run_wrk, tree_cpu


@contextlib.contextmanager
def two_servers(setup: Setup, server_a: str, server_b: str, shape: Shape, connections: int,
                ) -> Iterator[dict[str, GatewayServer]]:
    """``{"a": ..., "b": ...}`` started and warmed up by a second of ``shape`` each."""
    variant_b = setup.variant(server_b)
    with GatewayServer(setup.variant(server_a), shape, None, 60.0) as a, GatewayServer(variant_b, shape, None, 60.0) as b:
        servers = {"a": a, "b": b}
        for server in servers.values():
            run_wrk(f"http://{HOST}:{server.port}{shape.path}", shape.body, shape.headers, 1, connections,
                    prefix=pinned(setup.load_cpus))
        yield servers


def load_at_once(servers: dict[str, GatewayServer], shape: Shape, seconds: float, connections: int, cpus: str,
                 during: Callable[[str, GatewayServer], None] | None = None) -> dict[str, tuple[float, float]]:
    """Load every server with ``shape`` for ``seconds`` at the same time (one wrk each, on ``cpus``),
    ``during(name, server)`` running beside each load; ``{name: (requests, µs of CPU per request)}``."""
    results: dict[str, dict[str, float]] = {}
    cpu0 = {name: tree_cpu(server.pid) for name, server in servers.items()}

    def load(name: str, port: int) -> None:
        results[name] = run_wrk(f"http://{HOST}:{port}{shape.path}", shape.body, shape.headers, seconds, connections,
                                prefix=pinned(cpus))

    threads = [threading.Thread(target=load, args=(name, server.port)) for name, server in servers.items()]
    if during is not None:
        threads += [threading.Thread(target=during, args=(name, server)) for name, server in servers.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 90)
    figures = {}
    for name, server in servers.items():
        requests = results.get(name, {}).get("requests", 0.0)
        figures[name] = (requests, 1e6 * (tree_cpu(server.pid) - cpu0[name]) / max(1.0, requests))
    return figures
