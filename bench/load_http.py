"""HTTP load: ``POST /model`` with 64 concurrent keep-alive connections, floor against ours.

    python bench/load_http.py [--servers floor,ours,ours+memory,ours+redis,ours+keys] [--rounds 2]
                              [--duration 10] [--warmup 2] [--connections 64] [--tool auto]

Each server is started fresh on a free port, warmed up, loaded for ``--duration`` seconds and
stopped; servers alternate (A B A B) for ``--rounds`` rounds. Prints requests/s, latency
p50/p99 and the server's CPU milliseconds per request, each with its ratio to the floor of
the same run.

The load comes from ``wrk`` (one thread, a Lua script sets the POST body) when
``/usr/bin/wrk`` (or ``wrk`` on PATH) exists, else from the asyncio generator below, run in a
separate process (``--client-procs`` of them).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (HOST, PROMPT_BODY, PYTHON, Metric, Results, Server, Variant, alternate,  # noqa: E402
                    cpu_seconds, dump_json, percentile, post_request, report, run_wrk, variants, wrk_path)

DEFAULT_SERVERS = "floor,ours,ours+memory,ours+redis,ours+keys"


def wrk_load(port: int, duration: float, connections: int, threads: int = 1,
             headers: Sequence[tuple[str, str]] = ()) -> dict[str, float]:
    """One wrk run of ``POST /model``; requests/s, latencies in ms, error counts."""
    return run_wrk(f"http://{HOST}:{port}/model", PROMPT_BODY, [("Content-Type", "application/json"), *headers],
                   duration, connections, threads)


# -- the Python load generator (fallback, and fixed-count runs) ------------------------------

async def _client_main(port: int, connections: int, duration: float, requests: int,
                       headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    request = post_request(port, "/model", PROMPT_BODY, headers)
    latencies: list[float] = []
    errors = 0
    budget = [requests if requests > 0 else 1 << 62]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (duration if duration > 0 else 3600)
    perf = time.perf_counter

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while budget[0] > 0 and loop.time() < deadline:
                budget[0] -= 1
                t0 = perf()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                latencies.append(perf() - t0)
                if head[9:12] != b"200":
                    errors += 1
        finally:
            writer.close()

    start = perf()
    outcomes = await asyncio.gather(*(worker() for _ in range(connections)), return_exceptions=True)
    seconds = perf() - start
    errors += sum(1 for o in outcomes if isinstance(o, BaseException))
    return {"requests": len(latencies), "seconds": seconds, "latencies": latencies, "errors": errors}


def run_python_client(port: int, duration: float, connections: int, requests: int = 0,
                      procs: int = 1, headers: Sequence[tuple[str, str]] = ()) -> dict[str, float]:
    """The asyncio generator in ``procs`` separate processes; ``requests`` > 0: that many in all."""
    per_proc_conns = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    per_proc_reqs = [requests // procs + (1 if i < requests % procs else 0) if requests else 0 for i in range(procs)]
    children = [subprocess.Popen(
        [PYTHON, os.path.abspath(__file__), "--client", "--port", str(port), "--connections", str(c),
         "--duration", str(duration), "--requests", str(r),
         *[arg for name, value in headers for arg in ("--header", f"{name}: {value}")]],
        stdout=subprocess.PIPE, text=True) for c, r in zip(per_proc_conns, per_proc_reqs)]
    outputs = []
    try:
        for child in children:
            out, _ = child.communicate(timeout=(duration if duration > 0 else 600) + 60)
            outputs.append(json.loads(out))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    latencies = [x for o in outputs for x in o["latencies"]]
    total = sum(o["requests"] for o in outputs)
    seconds = max(o["seconds"] for o in outputs)
    return {"requests": total, "seconds": seconds, "rps": total / seconds,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "errors": sum(o["errors"] for o in outputs)}


# -- measuring one server --------------------------------------------------------------------

def load(port: int, duration: float, connections: int, tool: str, client_procs: int = 1,
         headers: Sequence[tuple[str, str]] = ()) -> dict[str, float]:
    if tool == "wrk":
        return wrk_load(port, duration, connections, headers=headers)
    return run_python_client(port, duration, connections, procs=client_procs, headers=headers)


def measure_server(server: Server, *, duration: float, warmup: float, connections: int, tool: str,
                   client_procs: int = 1) -> dict[str, float]:
    """Warm ``server`` up, then load it; adds the server's CPU ms per request."""
    headers = server.variant.headers
    if warmup > 0:
        load(server.port, warmup, connections, tool, client_procs, headers)
    cpu0 = cpu_seconds(server.pid)
    result = load(server.port, duration, connections, tool, client_procs, headers)
    cpu = cpu_seconds(server.pid) - cpu0
    result["cpu_ms_per_req"] = 1000 * cpu / result["requests"] if result["requests"] else float("nan")
    return result


def pick_tool(choice: str) -> str:
    if choice == "auto":
        return "wrk" if wrk_path() else "python"
    if choice == "wrk" and not wrk_path():
        raise SystemExit("wrk not found (apt-get install -y wrk), or use --tool python")
    return choice


HTTP_METRICS = [Metric("rps", "req/s"), Metric("p50_ms", "p50 ms", 2, "diff"),
                Metric("p99_ms", "p99 ms", 2, "diff"), Metric("cpu_ms_per_req", "CPU ms/req", 3),
                Metric("errors", "errors", 0, None)]


def run(server_names: list[str], rounds: int, duration: float, warmup: float, connections: int,
        tool: str, client_procs: int = 1) -> Results:
    tool = pick_tool(tool)
    print(f"HTTP load: POST /model, {connections} connections, {duration:g} s per run after {warmup:g} s "
          f"warm-up, {rounds} round(s), load from {tool}"
          + (f" ({client_procs} client processes)" if tool == "python" else ""), file=sys.stderr)

    def measure(variant: Variant, _round: int) -> dict[str, float]:
        with Server(variant) as server:
            return measure_server(server, duration=duration, warmup=warmup, connections=connections,
                                  tool=tool, client_procs=client_procs)

    return alternate(variants(server_names), rounds, measure, label="http")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=DEFAULT_SERVERS, help=f"comma separated (default {DEFAULT_SERVERS})")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--client-procs", type=int, default=1, help="processes of the Python generator")
    parser.add_argument("--json", help="also write the raw measurements to this file")
    # internal: the Python generator itself
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--header", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        headers = [tuple(header.split(": ", 1)) for header in args.header]
        print(json.dumps(asyncio.run(_client_main(args.port, args.connections, args.duration, args.requests,
                                                  headers))))
        return
    results = run(args.servers.split(","), args.rounds, args.duration, args.warmup, args.connections,
                  args.tool, args.client_procs)
    report(f"POST /model, {args.connections} connections (median of {args.rounds} rounds; ratios to the floor "
           f"of the same round)", results, HTTP_METRICS)
    dump_json(args.json, results.to_json())


if __name__ == "__main__":
    main()
