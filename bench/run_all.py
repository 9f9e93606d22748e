"""Every benchmark, floor against ours, one table each.

    python bench/run_all.py [--rounds 2] [--quick] [--only http,ws,v1,footprint,limiter] [--json out.json]

Servers: the bare Tornado floor (bench/floor_server.py) and ours with no limiter, with the
memory limiter and with the Redis limiter (``redis://127.0.0.1:6379/15``), both with limits
that never trip. Within each benchmark the servers alternate (floor, ours, ours+memory,
ours+redis, floor, ...) for ``--rounds`` rounds, and every ratio is to the floor measured in
the same round. ``--quick`` shortens everything for a smoke test (figures then mean little).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import footprint  # noqa: E402
import load_http  # noqa: E402
import load_v1  # noqa: E402
import load_ws  # noqa: E402
from common import BENCH_DIR, OURS_DIR, PYTHON, REPO_DIR, dump_json, report  # noqa: E402

SERVERS = ["floor", "ours", "ours+memory", "ours+redis"]
STAGES = ["http", "ws", "v1", "footprint", "limiter"]


def machine_line() -> str:
    try:
        import tornado

        tornado_version = tornado.version
    except ImportError:
        tornado_version = "?"
    try:
        rev = subprocess.run(["git", "-C", OURS_DIR, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or "?"
        dirty = subprocess.run(["git", "-C", OURS_DIR, "status", "--porcelain", "monoai_tornado"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        rev += " (+ uncommitted changes)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    if OURS_DIR != REPO_DIR:
        rev += f" from {OURS_DIR}"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.node()}: {os.cpu_count()} CPUs, load {load}; Python {platform.python_version()}, "
            f"Tornado {tornado_version}; monoai_tornado {rev}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="A B A B rounds per benchmark (>= 2 for figures)")
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma separated subset of {STAGES}")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma separated; the floor first")
    parser.add_argument("--http-duration", type=float, default=10.0)
    parser.add_argument("--ws-connections", type=int, default=200)
    parser.add_argument("--ws-prompts", type=int, default=20)
    parser.add_argument("--ws-client-procs", type=int, default=2)
    parser.add_argument("--v1-connections", type=int, default=100)
    parser.add_argument("--v1-requests", type=int, default=20)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--json", help="write every raw measurement to this file")
    args = parser.parse_args()
    stages = args.only.split(",")
    servers = args.servers.split(",")
    if args.quick:
        args.http_duration = min(args.http_duration, 3.0)
        args.ws_connections = min(args.ws_connections, 50)
        args.ws_prompts = min(args.ws_prompts, 5)
        args.v1_connections = min(args.v1_connections, 25)
        args.v1_requests = min(args.v1_requests, 5)
        args.idle = min(args.idle, 2000)
    print(machine_line())
    print(f"rounds: {args.rounds}{' (QUICK: smoke test, not figures)' if args.quick else ''}")
    sys.stdout.flush()
    everything: dict[str, object] = {"machine": machine_line(), "rounds": args.rounds, "quick": args.quick}
    started = time.monotonic()

    if "http" in stages:
        results = load_http.run(servers, args.rounds, args.http_duration, 1.0 if args.quick else 2.0, 64, "auto")
        report(f"HTTP: POST /model, 64 connections, {args.http_duration:g} s per run "
               f"(load from {load_http.pick_tool('auto')}; median of {args.rounds} rounds)",
               results, load_http.HTTP_METRICS)
        everything["http"] = results.to_json()

    if "ws" in stages:
        results = load_ws.run(servers, args.rounds, args.ws_connections, args.ws_prompts, args.ws_client_procs)
        report(f"WebSocket: {args.ws_connections} connections x {args.ws_prompts} prompts, 64 chunks of 4 chars "
               f"({args.ws_client_procs} client processes; median of {args.rounds} rounds)",
               results, load_ws.WS_METRICS)
        everything["ws"] = results.to_json()

    if "v1" in stages:
        results = load_v1.run(servers, args.rounds, args.v1_connections, args.v1_requests, args.ws_client_procs)
        report(load_v1.title(args.v1_connections, args.v1_requests, args.rounds), results, load_v1.V1_METRICS)
        everything["v1"] = results.to_json()

    if "footprint" in stages:
        results = footprint.run(servers, args.rounds, args.idle, 1.0, 2.0 if args.quick else 5.0, "auto")
        report(f"Footprint: {args.idle:,} idle WebSocket connections; CPU per 1,000 requests "
               f"(median of {args.rounds} rounds)", results, footprint.FOOTPRINT_METRICS)
        everything["footprint"] = results.to_json()

    if "limiter" in stages:
        script = os.path.join(BENCH_DIR, "bench_limiter.py")
        print("\nLimiter alone (bench/bench_limiter.py):")
        sys.stdout.flush()
        if os.path.exists(script):
            extra = ["--memory", "50000", "--redis", "2000"] if args.quick else []
            out = subprocess.run([PYTHON, script, *extra], cwd=REPO_DIR, capture_output=True, text=True, timeout=900)
            print(out.stdout.rstrip() or out.stderr.rstrip())
            everything["limiter"] = out.stdout
        else:
            print("  (bench/bench_limiter.py not found)")

    print(f"\n(all benchmarks: {time.monotonic() - started:.0f} s)")
    dump_json(args.json, everything)


if __name__ == "__main__":
    main()
